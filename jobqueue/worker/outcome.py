"""What an attempt's report means for its job: pure decisions, no database."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from jobqueue.exceptions import UnstorableResult

# "late": a rate-limited job that reached its child after its start-by deadline
# and was not run (jobqueue/scheduling/limits.py).
ReportKind = Literal["succeeded", "failed", "cancelled", "snoozed", "late"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What the child process says about one attempt of one job."""

    job_id: int
    kind: ReportKind
    result_json: str | None = None  # the return value, already JSON
    error: dict[str, str] | None = None  # {"type", "message", "traceback"}
    duration: float = 0.0  # seconds the task ran
    started_at: float | None = None  # wall-clock time (time.time()) the child began it
    snooze: float = 0.0  # seconds to wait before running again (kind "snoozed")

    def as_message(self) -> tuple[Any, ...]:
        """The fields as a plain tuple, which pickles far faster than the dataclass."""
        return (
            self.job_id, self.kind, self.result_json, self.error, self.duration, self.started_at,
            self.snooze,
        )  # fmt: skip

    @classmethod
    def from_message(cls, message: tuple[Any, ...]) -> "Report":
        job_id, kind, result_json, error, duration, started_at, snooze = message
        return cls(
            job_id=job_id,
            kind=kind,
            result_json=result_json,
            error=error,
            duration=duration,
            started_at=started_at,
            snooze=snooze,
        )


def class_path(cls: type[BaseException]) -> str:
    """The dotted path an error entry's ``type`` names its exception class by."""
    return f"{cls.__module__}.{cls.__qualname__}"


def error_of(cls: type[BaseException], message: str) -> dict[str, str]:
    """An error the supervisor records itself (a kill, a fence, a refused outcome): no traceback."""
    return {"type": class_path(cls), "message": message, "traceback": ""}


# Errors that no retry can fix: another attempt would end the same way. A return
# value that cannot be stored (the child's check, or the database's refusal of the
# outcome) would be computed again at every attempt, at full cost, only to be
# refused again; so such a failure fails the job at once, whatever attempts remain.
FINAL_ERRORS = frozenset(class_path(cls) for cls in (UnstorableResult,))


def is_final(report: Report) -> bool:
    """Whether ``report`` is a failure that no retry can fix (see FINAL_ERRORS)."""
    return report.error is not None and report.error.get("type") in FINAL_ERRORS


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The job's next state, as the ack statement writes it, for the attempt holding ``token``."""

    job_id: int
    token: int  # the attempt's fencing token: the ack changes the row only while it matches
    status: str
    result_json: str | None = None
    error_json: str | None = None  # a one-element JSON array to append to errors
    # Seconds after the ack the job is due again (a retry's backoff, a snooze), counted in
    # the ack from the database's now(): the claim compares scheduled_at with that clock,
    # and a worker host's clock ahead or behind it would stretch or cut every delay.
    delay: float | None = None
    started_at: datetime | None = None  # when the child began the attempt

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.job_id,
            self.token,
            self.status,
            self.result_json,
            self.error_json,
            self.delay,
            self.started_at,
        )


def decide(
    report: Report,
    *,
    token: int,
    attempts: int,
    max_attempts: int,
    now: datetime,
    retry_delay: float,
    worker: str,
) -> Outcome:
    """Succeeded, cancelled, re-queued after a delay, snoozed, late, or failed for good.

    A failure is re-queued while attempts remain, unless no retry can fix it
    (``is_final``: an unstorable result), which fails the job at once.

    A snoozed attempt goes back to the queue with the status "snoozed", which the
    ack writes as queued with the attempt refunded (see queries.ACK); a late one
    (never started) goes back the same way, leaving no run behind. (A cancel
    request seen only by the database wins over a retry or a snooze there.)
    """
    started = None if report.started_at is None else datetime.fromtimestamp(report.started_at, UTC)
    attempt = partial(Outcome, job_id=report.job_id, token=token, started_at=started)
    match report.kind:
        case "succeeded":
            return attempt(status="succeeded", result_json=report.result_json)
        case "cancelled":
            error = error_entry(report, attempts, now, worker)
            return attempt(status="cancelled", error_json=error)
        case "snoozed":
            return attempt(status="snoozed", delay=report.snooze)
        case "late":
            return Outcome(job_id=report.job_id, token=token, status="late")
        case "failed" if attempts < max_attempts and not is_final(report):
            return attempt(
                status="queued",
                error_json=error_entry(report, attempts, now, worker),
                delay=retry_delay,
            )
        case "failed":
            error = error_entry(report, attempts, now, worker)
            return attempt(status="failed", error_json=error)
    raise ValueError(f"unknown report kind {report.kind!r}")


def error_entry(report: Report, attempt: int, now: datetime, worker: str) -> str:
    error = report.error or {"type": "", "message": "", "traceback": ""}
    return json.dumps(
        [
            {
                "attempt": attempt,
                "type": error["type"],
                "message": error["message"],
                "traceback": error["traceback"],
                "at": now.isoformat(),
                "worker": worker,
            }
        ]
    )
