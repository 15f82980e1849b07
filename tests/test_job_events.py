"""JSON logs: every line a worker writes parses, and one job's events tell its story in order."""

import json
import logging
import signal
from collections.abc import Callable

import pytest

import demo
from jobqueue.models import Job
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def events_of(lines: list[dict], job_id: int) -> list[dict]:
    return [line for line in lines if line.get("job_id") == job_id]


@pytest.mark.parametrize("variable", ["LOG_FORMAT", "JOBQUEUE_LOG_FORMAT"])
def test_json_lines_tell_each_jobs_story(
    start_worker: Callable, caplog: pytest.LogCaptureFixture, variable: str
) -> None:
    with caplog.at_level(logging.INFO, logger="jobqueue.events"):
        failing = demo.fail.using(max_attempts=2).enqueue(message="boom")
        ok = demo.echo.enqueue(n=1)
        slow = demo.sleep.using(priority=-10).enqueue(seconds=30)
    enqueued = {r.job_id: r for r in caplog.records if r.event == "enqueued"}  # type: ignore[attr-defined]
    assert set(enqueued) == {int(failing.id), int(ok.id), int(slow.id)}
    assert enqueued[int(ok.id)].task == "demo.echo"  # type: ignore[attr-defined]

    worker = start_worker("--concurrency", "2", "--shutdown-timeout", "0.5", **{variable: "json"})
    wait_until(
        lambda: (
            Job.objects.filter(status__in=["succeeded", "failed"]).count() == 2
            and Job.objects.filter(pk=slow.id, status="running").exists()
        ),
        30,
        "both short jobs finished and the slow one started",
    )
    worker.signal(signal.SIGTERM)  # the slow job is given back after the shutdown timeout
    assert worker.wait(timeout=30) == 0

    lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    story = events_of(lines, int(failing.id))
    assert [(e["event"], e["attempt"]) for e in story] == [
        ("claimed", 1), ("started", 1), ("retried", 1),
        ("claimed", 2), ("started", 2), ("failed", 2),
    ]  # fmt: skip
    for event in story:
        assert (event["task"], event["queue"]) == ("demo.fail", "default")
        assert event["worker"]["pid"] == worker.pid and event["worker"]["id"] is not None
        assert event["worker"]["host"]
    for finished in (story[2], story[5]):
        assert finished["error_class"] == "builtins.RuntimeError"
        assert finished["error_message"] == "boom"
        assert finished["duration"] >= 0 and finished["wait"] >= 0

    assert [e["event"] for e in events_of(lines, int(ok.id))] == ["claimed", "started", "succeeded"]
    assert [e["event"] for e in events_of(lines, int(slow.id))] == [
        "claimed", "started", "given_back"
    ]  # fmt: skip
