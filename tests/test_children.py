"""The supervisor's view of a real child process: what its death means for which job."""

import subprocess
import sys
import textwrap

import pytest

from jobqueue.worker.children import InHand, start_child
from jobqueue.worker.executor import Assignment
from jobqueue.worker.fence import EXIT_FENCED, LeaseFence
from tests.conftest import ROOT


def in_hand(job_id: int) -> InHand:
    return InHand(
        assignment=Assignment(job_id, job_id * 10, "demo.sleep", "[]", "{}", 1, 1.0),
        max_attempts=3,
        queue="default",
    )


@pytest.fixture
def child():
    child = start_child([], "test:1", LeaseFence(), threads=0)
    yield child
    child.kill("test")
    child.process.join(timeout=5)


def test_a_kill_reason_names_the_job_it_was_for(child):
    """The child finished job A at its deadline and began B when the kill for A landed:
    B must not be recorded as timed out (or cancelled)."""
    a, b = in_hand(1), in_hand(2)
    child.jobs.extend([a, b])
    child.kill("timeout", [a.assignment.job_id])
    child.finish_first()  # A's report arrived before the socket closed
    report = child.death_report(b, cancel_grace=1)
    assert report.error["type"] == "jobqueue.exceptions.ChildCrashed"
    assert "SIGKILL" in report.error["message"]


def test_a_kill_for_the_running_job_says_why(child):
    a = in_hand(1)
    child.jobs.append(a)
    child.kill("timeout", [a.assignment.job_id])
    report = child.death_report(a, cancel_grace=1)
    assert report.error["type"] == "jobqueue.exceptions.JobTimeout"
    assert "timeout of 1 s" in report.error["message"]


def test_the_fence_watchdog_fences_when_it_cannot_tell_whether_a_job_runs():
    """The child's watchdog is its self-fencing: if it died (of "set changed size during
    iteration" while reading the jobs in flight, say), the child would run on past its
    lease. Failing to tell, once the lease has run out, it stops the child as if a job ran."""
    script = textwrap.dedent(
        """
        import time
        from jobqueue.worker.fence import LeaseFence, watch_in_child

        def running():
            raise RuntimeError("Set changed size during iteration")

        watch_in_child(LeaseFence(), running)  # a new fence: its lease has run out
        time.sleep(60)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert child.returncode == EXIT_FENCED, child.stderr
    assert "watchdog failed" in child.stderr
