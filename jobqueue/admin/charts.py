"""The health page's charts as inline SVG: time on the x axis, a count on the y axis.

No JavaScript library and nothing fetched: the page renders (and refreshes) as plain
HTML. Every chart has the same frame: a y axis with 0, half the peak and the peak
on dashed grid lines, and a time axis labelled at even steps.

The figures come from ``jobqueue.health``, which the API and the management commands
read too; only the admin's health page draws them, so the drawing lives here.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobqueue.health import CHART_MINUTES, Depth, Minute

# The plot area, and the margins that hold the axes' labels.
WIDTH, HEIGHT = 600, 120
LEFT, BOTTOM, TOP = 40, 22, 8
TICKS = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """Maps a time in [start, end] and a count in [0, peak] to the plot area."""

    start: datetime
    end: datetime
    peak: int

    def x(self, at: datetime) -> float:
        return LEFT + WIDTH * (at - self.start) / (self.end - self.start)

    def y(self, value: float) -> float:
        return HEIGHT - (HEIGHT - TOP) * value / (self.peak or 1)


def svg(frame: Frame, label: str, unit: str, body: SafeString, time_format: str) -> SafeString:
    """The chart's frame (axes, grid, labels) around ``body``, its plotted marks."""
    step = (frame.end - frame.start) / TICKS
    x_ticks = [frame.start + step * i for i in range(TICKS + 1)]
    y_ticks = sorted({0, frame.peak // 2, frame.peak})
    return format_html(
        '<svg class="jq-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{label}"><g class="jq-y-axis">{y_ticks}<text x="2" y="{mid}" '
        'class="jq-axis" transform="rotate(-90 8 {mid})">{unit}</text></g>'
        '<g class="jq-x-axis"><line x1="{left}" y1="{base}" x2="{right}" y2="{base}" '
        'class="jq-axis-line"/>{x_ticks}</g>{body}</svg>',
        w=LEFT + WIDTH + 20,
        h=HEIGHT + BOTTOM,
        label=label,
        unit=unit,
        mid=HEIGHT // 2,
        left=LEFT,
        right=LEFT + WIDTH,
        base=HEIGHT,
        y_ticks=format_html_join(
            "",
            '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" class="jq-grid"/>'
            '<text x="{3}" y="{4}" class="jq-axis" text-anchor="end">{5}</text>',
            (
                (LEFT, f"{frame.y(v):.1f}", LEFT + WIDTH, LEFT - 4, f"{frame.y(v) + 3:.1f}", v)
                for v in y_ticks
            ),
        ),
        x_ticks=format_html_join(
            "",
            '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="jq-axis-line"/>'
            '<text x="{0}" y="{3}" class="jq-axis" text-anchor="middle">{4}</text>',
            (
                (f"{frame.x(at):.1f}", HEIGHT, HEIGHT + 4, HEIGHT + 15, f"{at:{time_format}}")
                for at in x_ticks
            ),
        ),
        body=body,
    )


def stacked_bars(
    frame: Frame, bars: Sequence[tuple[datetime, int, int, str]], width: float
) -> SafeString:
    """One bar per ``(time, lower, upper, title)``: ``lower`` (succeeded) with ``upper``
    (failed) stacked on it."""
    return format_html_join(
        "",
        '<g><title>{6}</title><rect x="{0}" y="{1}" width="{5}" height="{2}" '
        'class="jq-bar-ok"/><rect x="{0}" y="{3}" width="{5}" height="{4}" '
        'class="jq-bar-fail"/></g>',
        (
            (
                f"{frame.x(at):.1f}",
                f"{frame.y(lower + upper):.1f}",
                f"{frame.y(0) - frame.y(lower):.1f}",
                f"{frame.y(upper):.1f}",
                f"{frame.y(0) - frame.y(upper):.1f}",
                f"{width:.1f}",
                title,
            )
            for at, lower, upper, title in bars
        ),
    )


def lines(frame: Frame, series: dict[str, Sequence[tuple[datetime, int]]]) -> SafeString:
    """One polyline per named series (its CSS class is ``jq-line-<name>``)."""
    return format_html_join(
        "",
        '<polyline class="jq-line jq-line-{0}" points="{1}"><title>{0}</title></polyline>',
        (
            (name, " ".join(f"{frame.x(at):.1f},{frame.y(v):.1f}" for at, v in points))
            for name, points in series.items()
        ),
    )


def throughput_chart(buckets: list[Minute], minutes: int = CHART_MINUTES) -> SafeString:
    """A stacked bar per minute (succeeded, failed on top) over the last ``minutes``."""
    end = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    frame = Frame(
        start=end - timedelta(minutes=minutes),
        end=end,
        peak=max((b.succeeded + b.failed for b in buckets), default=0),
    )
    bars = [
        (b.at, b.succeeded, b.failed, f"{b.at:%H:%M}: {b.succeeded} succeeded, {b.failed} failed")
        for b in buckets
        if b.at >= frame.start
    ]
    body = stacked_bars(frame, bars, width=WIDTH / minutes - 1)
    return svg(frame, "jobs finished per minute over the last hour", "jobs / min", body, "%H:%M")


def depth_chart(points: list[Depth], span: timedelta, label: str) -> SafeString:
    """Ready, scheduled and running jobs over ``span`` as three lines."""
    end = timezone.now()
    frame = Frame(
        start=end - span,
        end=end,
        peak=max((max(p.ready, p.scheduled, p.running) for p in points), default=0),
    )
    body = lines(
        frame,
        {
            "ready": [(p.at, p.ready) for p in points],
            "scheduled": [(p.at, p.scheduled) for p in points],
            "running": [(p.at, p.running) for p in points],
        },
    )
    return svg(frame, label, "jobs", body, "%H:%M")
