"""Global limits per queue: at most N jobs running at once, at most N starts per window.

They hold across every worker on every host because the claim enforces them in
the database (queries.LOCK_LIMITS and queries.CLAIM say how, lock by lock):

- a limited queue has a row in ``jobqueue_queuelimit``. A claim first locks the
  rows of the limited queues it serves (in name order, so claims cannot
  deadlock), then, in a second statement with a fresh snapshot that sees every
  claim committed before it, counts what the limits leave room for and claims
  no more. Both statements travel in the claim's pipeline: one round trip.
- concurrency counts the queue's jobs whose status is running, which includes
  those claimed and not yet started. A job held back stays queued and keeps
  its attempt.
- rate keeps a sliding log of the queue's last starts (their claim times, read
  from the database's clock) in the limit row. A claim takes at most
  ``rate - (claims in the last per + START_SLACK seconds)`` jobs.

A queue without a row pays nothing but two empty lookups per claim.

The bound of the rate limit, on the moments jobs really start: a rate-limited
job carries a start-by deadline of START_SLACK seconds after its claim was
sent (the worker's monotonic clock, so no clock is compared across hosts). A
child that gets it later does not run it: the job goes back to the queue,
unstarted and with its attempt refunded (queries.ACK's "late"). A job's claim
time c and real start s thus satisfy c <= s <= c + START_SLACK, so any window
of ``per`` seconds of starts holds only jobs claimed in a window of
``per + START_SLACK`` seconds, of which the log admits at most ``rate``. The
price: at saturation a queue reaches rate / (per + START_SLACK) per second,
for "10/s" 9.1 jobs/s.
"""

import math
import re
from dataclasses import dataclass
from typing import Any

# Seconds a rate-limited job may wait between its claim and its start; see above.
START_SLACK = 0.1
# Most starts one rate may allow per window: the log keeps one timestamp per start in the
# window, in the queue's row, rewritten by every claim of the queue (8 bytes each).
MAX_RATE = 10_000

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_KEYS = {"concurrency", "rate", "execution"}


@dataclass(frozen=True, slots=True)
class QueueLimitSpec:
    """One queue's limits as written in settings: concurrency, and rate as (count, seconds)."""

    queue: str
    concurrency: int | None = None
    rate: int | None = None
    per: float | None = None

    @classmethod
    def from_setting(cls, queue: str, options: dict[str, Any]) -> "QueueLimitSpec":
        """Parse ``JOBQUEUE["QUEUES"][queue]``; ValueError names the queue when it is wrong."""
        if not isinstance(options, dict):
            raise ValueError(f"QUEUES[{queue!r}] must be a dict, got {options!r}")
        unknown = set(options) - _KEYS
        if unknown:
            raise ValueError(f"QUEUES[{queue!r}] has unknown keys: {', '.join(sorted(unknown))}")
        concurrency = options.get("concurrency")
        if concurrency is not None and (
            not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1
        ):
            raise ValueError(
                f"QUEUES[{queue!r}]['concurrency'] must be a positive integer, got {concurrency!r}"
            )
        rate, per = (None, None)
        if options.get("rate") is not None:
            rate, per = parse_rate(options["rate"], queue=queue)
        execution = options.get("execution")
        if execution is not None and execution not in ("process", "thread", "async"):
            raise ValueError(
                f"QUEUES[{queue!r}]['execution'] must be process, thread or async, "
                f"got {execution!r}"
            )
        return cls(queue, concurrency, rate, per)

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None


def parse_rate(text: object, *, queue: str = "?") -> tuple[int, float]:
    """``"10/s"`` -> (10, 1.0); also ``"100/min"``, ``"1000/h"``, ``"5/30s"``."""
    match = _RATE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"QUEUES[{queue!r}]['rate'] must look like '10/s', '100/min', '1000/h' or '5/30s', "
            f"got {text!r}"
        )
    count, multiple = int(match.group(1)), float(match.group(2) or 1)
    per = multiple * unit
    if count < 1 or not math.isfinite(per) or per <= 0:
        raise ValueError(f"QUEUES[{queue!r}]['rate'] must allow at least 1 start, got {text!r}")
    if count > MAX_RATE:
        raise ValueError(
            f"QUEUES[{queue!r}]['rate'] allows at most {MAX_RATE:,} starts per window, got "
            f"{text!r}: use a shorter window (the log keeps one timestamp per start in it)"
        )
    return count, per


def specs(queues_setting: dict[str, dict]) -> list[QueueLimitSpec]:
    """The limited queues of ``JOBQUEUE["QUEUES"]``, parsed."""
    parsed = [QueueLimitSpec.from_setting(q, o) for q, o in queues_setting.items()]
    return [spec for spec in parsed if spec.limited]


def queue_modes(conf: Any) -> dict[str, str]:
    """Each queue's execution mode: QUEUE_EXECUTION, and QUEUES' "execution" entries."""
    modes = dict(conf.QUEUE_EXECUTION)
    modes.update({q: o["execution"] for q, o in conf.QUEUES.items() if o.get("execution")})
    return modes


def format_rate(rate: int | None, per: float | None) -> str:
    """(10, 1.0) -> "10/s", (100, 60.0) -> "100/min"; "" without a rate."""
    if rate is None or per is None:
        return ""
    for seconds, unit in ((1.0, "s"), (60.0, "min"), (3600.0, "h")):
        if per == seconds:
            return f"{rate}/{unit}"
    return f"{rate}/{per:g}s"
