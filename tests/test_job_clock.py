"""The executor's job clock with real SIGALRMs: the timer stays armed between jobs."""

import signal
import time

import pytest

from jobqueue.exceptions import JobTimeout
from jobqueue.worker.executor import JobClock


@pytest.fixture
def clock():
    clock = JobClock()
    yield clock
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


def sleep_through(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_job_past_its_timeout_is_interrupted(clock):
    clock.start(0.2)
    started = time.monotonic()
    with pytest.raises(JobTimeout):
        sleep_through(3)
    assert time.monotonic() - started < 3, "the job was not interrupted"


def test_an_alarm_left_from_an_earlier_job_does_not_stop_a_later_one(clock):
    clock.start(0.2)
    clock.stop()  # the first job finished at once; its alarm stays armed
    clock.start(1.0)
    sleep_through(0.5)  # the earlier job's alarm goes off here and is re-armed
    clock.stop()
    assert clock.alarm_at is not None, "the alarm was re-armed for the later deadline"


def test_the_later_job_still_times_out_at_its_own_deadline(clock):
    clock.start(0.1)
    clock.stop()
    clock.start(0.5)
    started = time.monotonic()
    with pytest.raises(JobTimeout):
        sleep_through(3)
    assert time.monotonic() - started >= 0.4, "interrupted at the earlier job's deadline"


def test_a_shorter_timeout_re_arms_the_alarm(clock):
    clock.start(60)
    clock.stop()
    clock.start(0.2)
    with pytest.raises(JobTimeout):
        sleep_through(3)


def test_an_alarm_between_jobs_does_nothing(clock):
    clock.start(0.1)
    clock.stop()
    sleep_through(0.3)  # no job is running when it goes off
    assert clock.alarm_at is None
