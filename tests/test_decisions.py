"""Pure decisions of the worker, tested without a database: backoff and outcomes."""

import json
from datetime import UTC, datetime

import pytest

from jobqueue.worker.backoff import retry_delay
from jobqueue.worker.outcome import Report, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_per_attempt_within_its_jitter():
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16)]:
        assert retry_delay(attempt, base=2, cap=3600, rng=lambda: 0.0) == ceiling / 2
        assert retry_delay(attempt, base=2, cap=3600, rng=lambda: 1.0) == ceiling


def test_backoff_is_capped_even_for_huge_attempt_numbers():
    assert retry_delay(500, base=2, cap=60, rng=lambda: 1.0) == 60


def test_backoff_rejects_attempt_zero():
    with pytest.raises(ValueError, match="attempt must be at least 1"):
        retry_delay(0, base=2, cap=60)


def failure(kind: str = "failed") -> Report:
    return Report(job_id=7, kind=kind, error={"type": "E", "message": "m", "traceback": "t"})


def test_success_records_the_result():
    outcome = decide(
        Report(job_id=7, kind="succeeded", result_json="1"),
        token=11,
        attempts=1,
        max_attempts=3,
        now=NOW,
        retry_delay=5,
        worker="w",
    )
    assert (outcome.status, outcome.result_json, outcome.error_json) == ("succeeded", "1", None)


def test_failure_with_attempts_left_is_requeued_after_the_delay():
    outcome = decide(
        failure(), token=11, attempts=1, max_attempts=3, now=NOW, retry_delay=5, worker="w"
    )
    assert outcome.status == "queued"
    assert outcome.delay == 5
    [entry] = json.loads(outcome.error_json)
    assert entry == {
        "attempt": 1,
        "type": "E",
        "message": "m",
        "traceback": "t",
        "at": NOW.isoformat(),
        "worker": "w",
    }


def test_failure_of_the_last_attempt_fails_the_job():
    outcome = decide(
        failure(), token=11, attempts=3, max_attempts=3, now=NOW, retry_delay=5, worker="w"
    )
    assert (outcome.status, outcome.delay) == ("failed", None)


def test_cancellation_ends_the_job_whatever_attempts_remain():
    outcome = decide(
        failure("cancelled"),
        token=11,
        attempts=1,
        max_attempts=3,
        now=NOW,
        retry_delay=5,
        worker="w",
    )
    assert outcome.status == "cancelled"


def unstorable() -> Report:
    error = {"type": "jobqueue.exceptions.UnstorableResult", "message": "NaN", "traceback": ""}
    return Report(job_id=7, kind="failed", error=error)


def test_an_error_no_retry_can_fix_fails_the_job_whatever_attempts_remain():
    outcome = decide(
        unstorable(), token=11, attempts=1, max_attempts=3, now=NOW, retry_delay=5, worker="w"
    )
    assert (outcome.status, outcome.delay) == ("failed", None)
    [entry] = json.loads(outcome.error_json)
    assert (entry["type"], entry["message"], entry["attempt"]) == (
        "jobqueue.exceptions.UnstorableResult",
        "NaN",
        1,
    )
