"""Times as the admin shows them: one absolute format, and relative where it helps.

Absolute times use the site's DATETIME_FORMAT (seconds and time zone, see
project/formats); the error and attempt histories store ISO strings, which are
shown the same way.
"""

from datetime import datetime

from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def duration(value: float | None) -> str:
    """Seconds as people read them: "4.2 s", "3 min 5 s", "2 h 10 min"."""
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def absolute(at: datetime | str | None) -> str:
    """``at`` in the site's one format, e.g. "2026-11-30 04:20:07 UTC"."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at is None:
        return "—"
    return formats.date_format(timezone.localtime(at), "DATETIME_FORMAT")


def relative(at: datetime, now: datetime | None = None) -> str:
    """ "3.0 s ago" or "in 4 min 2 s"."""
    delta = (at - (now or timezone.now())).total_seconds()
    return f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"


def both(at: datetime | str | None) -> SafeString | str:
    """The absolute time, followed by the relative one in a lighter style."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at is None:
        return "—"
    return format_html(
        '<time datetime="{}">{}</time> <span class="jq-relative">({})</span>',
        at.isoformat(),
        absolute(at),
        relative(at),
    )
