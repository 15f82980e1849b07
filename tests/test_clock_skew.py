"""A worker whose host clock is five minutes off the database's (libfaketime shifts its
clocks): its retries and snoozes are still due by the database's
clock, which the claim compares scheduled_at with, so they neither wait five minutes more nor
skip their delay."""

import glob
from datetime import datetime, timedelta

import pytest

from jobqueue.models import Job, JobStatus
from tests import tasks
from tests.conftest import wait_until

LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
pytestmark = pytest.mark.skipif(
    LIBFAKETIME is None, reason="needs libfaketime: apt-get install faketime"
)


# Five minutes: far past any delay here, and the monotonic clock (shifted too, alike in
# the supervisor and its children) stays positive on a machine up for longer than that.
@pytest.mark.parametrize("offset", ["+5m", "-5m"], ids=["ahead", "behind"])
def test_retries_and_snoozes_are_due_by_the_database_clock(start_worker, execution_log, offset):
    retried = tasks.flaky.enqueue(failures=1)
    snoozed = tasks.snooze_once.enqueue(seconds=3)
    assert LIBFAKETIME is not None
    worker = start_worker("--concurrency", "2", LD_PRELOAD=LIBFAKETIME, FAKETIME=offset)
    ids = [retried.id, snoozed.id]
    wait_until(
        lambda: {j.status for j in Job.objects.filter(pk__in=ids)} == {JobStatus.SUCCEEDED},
        60,
        "both ran again and ended",
    )
    assert "watchdog failed" not in worker.output()
    retry, snooze = Job.objects.get(pk=retried.id), Job.objects.get(pk=snoozed.id)
    # Each is due its delay after its first attempt was recorded (the ack's now()): the
    # retry's backoff is BACKOFF_BASE (0.2 s in the tests), half of it random.
    failed_at = datetime.fromisoformat(retry.runs[0]["finished_at"])
    assert timedelta(seconds=0.1) <= retry.scheduled_at - failed_at <= timedelta(seconds=0.2)
    snoozed_at = datetime.fromisoformat(snooze.runs[0]["finished_at"])
    assert snooze.scheduled_at == snoozed_at + timedelta(seconds=3)
    # And it ran again no sooner (the test table's times are the database's clock).
    (_, _, _, first), (_, _, _, second) = execution_log()
    assert second - first >= timedelta(seconds=3)
