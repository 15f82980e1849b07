"""Global limits per queue (jobqueue/scheduling/limits.py): concurrency and rate, across workers.

Real runworker processes, several at once, against real PostgreSQL; what ran when is
read back from the rows, as a user would check it.
"""

import bisect
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.tasks.exceptions import InvalidTask

import demo
from jobqueue import queries
from jobqueue.models import Job, JobStatus, QueueLimit
from jobqueue.scheduling.limits import START_SLACK, QueueLimitSpec, parse_rate
from jobqueue.scheduling.periodic import PeriodicSchedule
from jobqueue.worker.executor import Assignment, Executor
from jobqueue.worker.limits import ClaimLimits
from jobqueue.worker.outcome import decide
from tests import tasks
from tests.conftest import database_url, wait_until


def max_overlap(intervals: list[tuple]) -> int:
    """The most intervals (start, end) open at one moment; an end at t closes before a start at t
    opens, as a slot freed by an ack is what lets the next claim take the job."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def busiest_window(starts: list, seconds: float) -> int:
    """The most starts in any half-open window [t, t + seconds)."""
    starts = sorted(starts)
    width = timedelta(seconds=seconds)
    return max((bisect.bisect_left(starts, s + width) - i for i, s in enumerate(starts)), default=0)


def done(queue: str) -> bool:
    return not Job.objects.filter(queue=queue).exclude(status=JobStatus.SUCCEEDED).exists()


def test_max_overlap_counts_what_runs_at_once():
    assert max_overlap([(0, 2), (1, 3), (2, 4)]) == 2
    assert max_overlap([(0, 5), (1, 2), (1, 3)]) == 3


@pytest.mark.slow
def test_concurrency_limit_holds_across_three_workers(start_worker):
    """concurrency 2, three workers of two children each (six free slots): never more than two
    of the queue's jobs run at once, measured from the rows' start and finish times, while
    an unlimited queue beside it runs on every slot. Held-back jobs keep their attempt."""
    limits = json.dumps({"reports": {"concurrency": 2}})
    reports = demo.sleep.using(queue_name="reports")
    limited = [reports.enqueue(seconds=0.15).id for _ in range(24)]
    free = [demo.sleep.enqueue(seconds=0.3).id for _ in range(12)]
    for _ in range(3):
        start_worker("--concurrency", "2", JOBQUEUE_QUEUES=limits)
    wait_until(lambda: done("reports") and done("default"), 90, "every job ran")

    rows = Job.objects.filter(pk__in=limited)
    intervals = [(j.started_at, j.finished_at) for j in rows]
    assert max_overlap(intervals) == 2, "the limit is reached, never passed"
    assert {j.attempts for j in rows} == {1}, "a job held back spends no attempt"
    assert all(len(j.runs) == 1 for j in rows)
    unlimited = [(j.started_at, j.finished_at) for j in Job.objects.filter(pk__in=free)]
    assert max_overlap(unlimited) > 2, "the unlimited queue is not held to the limit"


# Test-only triggers that keep, on the database's clock, the time of every claim of a
# rate-limited job: the claim within limits appends its clock_timestamp() to the queue's
# rate log (queries.LOG_STARTS) in the same transaction that turns the job's row from
# queued to running, so the two rows each trigger writes meet on their transaction id.
CLAIM_LOG = """
CREATE TABLE test_claimed (txid bigint, job_id bigint);
CREATE TABLE test_rate_log (txid bigint, at timestamptz);
CREATE FUNCTION test_note_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_claimed VALUES (txid_current(), NEW.id); RETURN NULL; END $$;
CREATE FUNCTION test_note_rate_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_rate_log VALUES (txid_current(), NEW.starts[array_upper(NEW.starts, 1)]);
RETURN NULL; END $$;
CREATE TRIGGER test_note_claim AFTER UPDATE ON jobqueue_job FOR EACH ROW
WHEN (OLD.status = 'queued' AND NEW.status = 'running') EXECUTE FUNCTION test_note_claim();
CREATE TRIGGER test_note_rate_log AFTER UPDATE ON jobqueue_queuelimit FOR EACH ROW
WHEN (NEW.starts IS DISTINCT FROM OLD.starts AND cardinality(NEW.starts) > 0)
EXECUTE FUNCTION test_note_rate_log();
"""
DROP_CLAIM_LOG = """
DROP TRIGGER IF EXISTS test_note_claim ON jobqueue_job;
DROP TRIGGER IF EXISTS test_note_rate_log ON jobqueue_queuelimit;
DROP FUNCTION IF EXISTS test_note_claim(), test_note_rate_log();
DROP TABLE IF EXISTS test_claimed, test_rate_log;
"""


@pytest.fixture
def claim_times(transactional_db: None) -> Iterator[Callable[[], list[tuple[int, datetime]]]]:
    """Every claim of a rate-limited job as (job id, the claim's time on the database's clock),
    in claim order; a job given back late and claimed again appears once per claim."""
    with connection.cursor() as cursor:
        cursor.execute(DROP_CLAIM_LOG)
        cursor.execute(CLAIM_LOG)

    def read() -> list[tuple[int, datetime]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.job_id, r.at FROM test_claimed AS c JOIN test_rate_log AS r USING (txid)"
                " ORDER BY r.at"
            )
            return cursor.fetchall()

    yield read
    with connection.cursor() as cursor:
        cursor.execute(DROP_CLAIM_LOG)


def busiest_closed_window(times: list[datetime], width: timedelta) -> int:
    """The most times in any closed window [t, t + width], as the rate log counts them."""
    times = sorted(times)
    return max(
        (bisect.bisect_right(times, t + width) - bisect.bisect_left(times, t) for t in times),
        default=0,
    )


@pytest.mark.slow
def test_rate_limit_is_exact_on_claims_and_bounds_real_starts(
    claim_times, execution_log, start_worker
):
    """rate 10/s, three workers of two children, a backlog of 300 (30 s at the rate):
    - claims, on the database's clock: no window of 1 s + START_SLACK holds more than 10;
    - each job's real start s (the row's started_at once it finished, the child's clock)
      follows its last claim c by at most START_SLACK, so no 1-second window holds more
      than 10 real starts;
    - a job that reached its child late was given back unrun: every job ran exactly once.
    What the task records after it began is not bounded (docs/limits-and-scheduling.md)."""
    mail = tasks.record.using(queue_name="mail")
    ids = [int(mail.enqueue(n=n).id) for n in range(300)]
    for _ in range(3):
        start_worker("--concurrency", "2", JOBQUEUE_QUEUES=json.dumps({"mail": {"rate": "10/s"}}))
    wait_until(lambda: done("mail"), 240, "all 300 mail jobs succeeded")

    claims = claim_times()
    window = timedelta(seconds=1 + START_SLACK)
    assert busiest_closed_window([at for _, at in claims], window) <= 10
    last_claim = {job_id: at for job_id, at in claims}  # in claim order: the last one stays
    rows = list(Job.objects.filter(pk__in=ids))
    assert set(last_claim) == set(ids), "every claim of the queue went through the rate log"
    # Claim and start are read from one host's clock (the database's and the child's), so
    # they compare; the worker checks the start against its monotonic clock and the child
    # then reads the wall clock, microseconds apart: 1 ms covers those two readings.
    slack = timedelta(seconds=START_SLACK, milliseconds=1)
    late = [j.pk for j in rows if not last_claim[j.pk] <= j.started_at <= last_claim[j.pk] + slack]
    assert late == [], "a job started more than START_SLACK after its claim"
    assert busiest_window([j.started_at for j in rows], 1.0) <= 10
    assert all(len(j.runs) == 1 and j.runs[0]["outcome"] == "succeeded" for j in rows)
    assert sorted(job_id for job_id, _, _, _ in execution_log()) == sorted(ids)


@pytest.mark.slow
def test_an_admin_override_holds_at_run_time_and_settings_leave_it_alone(start_worker):
    """Staff set concurrency 1 on a queue whose settings say 3, while workers run: claims
    after the change obey it, and a worker that starts later keeps the override."""
    start_worker("--concurrency", "2", JOBQUEUE_QUEUES=json.dumps({"crawl": {"concurrency": 3}}))
    wait_until(lambda: QueueLimit.objects.filter(queue="crawl").exists(), 30, "the sync")
    assert QueueLimit.objects.get(queue="crawl").source == "settings"
    QueueLimit.objects.filter(queue="crawl").update(concurrency=1, source="admin")
    start_worker("--concurrency", "2", JOBQUEUE_QUEUES=json.dumps({"crawl": {"concurrency": 3}}))
    crawl = demo.sleep.using(queue_name="crawl")
    ids = [crawl.enqueue(seconds=0.1).id for _ in range(12)]
    wait_until(lambda: done("crawl"), 60, "the crawl jobs ran")
    intervals = [(j.started_at, j.finished_at) for j in Job.objects.filter(pk__in=ids)]
    assert max_overlap(intervals) == 1
    assert QueueLimit.objects.get(queue="crawl").concurrency == 1


@pytest.mark.slow
def test_one_running_job_per_key_across_workers_and_no_key_waits_behind_a_backlog(start_worker):
    """concurrency_limit 1 per customer, three workers of two children: a customer's jobs never
    overlap, different customers' do, and a customer whose 4 jobs were enqueued after another
    customer's 30 does not wait for those 30 (the claim walks the keys round-robin)."""
    big = [tasks.customer_nap.enqueue(customer="big", seconds=0.1).id for _ in range(30)]
    small = {
        name: [tasks.customer_nap.enqueue(customer=name, seconds=0.1).id for _ in range(4)]
        for name in ("b", "c", "d")
    }
    for _ in range(3):
        start_worker("--concurrency", "2")
    wait_until(lambda: done("default"), 90, "every job ran")

    def intervals(ids: list) -> list[tuple]:
        return [(j.started_at, j.finished_at) for j in Job.objects.filter(pk__in=ids)]

    for ids in [big, *small.values()]:
        assert max_overlap(intervals(ids)) == 1
    everything = intervals(big + [i for ids in small.values() for i in ids])
    assert max_overlap(everything) > 1, "different keys run side by side"
    last_small = max(e for ids in small.values() for _, e in intervals(ids))
    last_big = max(e for _, e in intervals(big))
    assert last_small < last_big, "the small customers finished while the big one's backlog ran"
    assert Job.objects.filter(pk__in=big).values("concurrency_key").distinct().count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_walk_over_keys_goes_round_robin_so_every_key_gets_its_turn():
    """Five customers with two jobs each, limit 1, a walk of two keys per claim and one free
    slot: claim after claim, the worker's walk resumes after the key it looked at last, so
    each claim takes the next customer's job. Starting from the first key each time, the
    third claim would find only customers at their limit and take nothing."""
    for name in "abcde":
        for _ in range(2):
            tasks.customer_nap.enqueue(customer=name)
    limits = ClaimLimits()
    taken = []
    for _ in range(5):
        with connection.cursor() as lock_cursor, connection.cursor() as cursor:
            lock_cursor.execute("BEGIN")
            queries.claim(
                cursor,
                lock_cursor=lock_cursor,
                worker=None,
                demand=10,
                free=1,
                queues=(),
                key_walk=2,
                **limits.claim_options(),
            )
            limits.read(lock_cursor, sent_at=0.0)
            taken += [row[0] for row in queries.claimed(cursor)]
            cursor.execute("COMMIT")
    keys = Job.objects.filter(pk__in=taken).values_list("concurrency_key", flat=True)
    assert sorted(keys) == [f"customer:{name}" for name in "abcde"]


def test_keys_are_stored_by_every_enqueue_path_and_a_missing_argument_is_refused(transactional_db):
    one = tasks.customer_nap.enqueue(customer="x")
    many = tasks.customer_nap.get_backend().enqueue_many(
        tasks.customer_nap, [((), {"customer": "y"}), ((), {"customer": "z"})]
    )
    callable_key = tasks.customer_nap.using(concurrency_key=lambda **kw: kw["customer"].upper())
    upper = callable_key.enqueue(customer="w")
    stored = dict(
        Job.objects.filter(pk__in=[one.id, *(r.id for r in many), upper.id]).values_list(
            "concurrency_key", "concurrency_limit"
        )
    )
    assert stored == {"customer:x": 1, "customer:y": 1, "customer:z": 1, "W": 1}
    with pytest.raises(InvalidTask, match="concurrency_key could not be made"):
        tasks.customer_nap.enqueue(seconds=1)
    with pytest.raises(InvalidTask, match="concurrency_limit"):
        tasks.customer_nap.using(concurrency_limit=0).enqueue(customer="x")


@pytest.mark.slow
def test_a_worker_without_limits_obeys_one_added_at_run_time(start_worker):
    """A worker started with no limit claims the plain way; staff add a limit while it runs,
    and the jobs of that queue enqueued afterwards run one at a time."""
    start_worker("--concurrency", "3")
    warm = demo.echo.enqueue()
    wait_until(lambda: Job.objects.get(pk=warm.id).status == JobStatus.SUCCEEDED, 30, "a job ran")
    QueueLimit.objects.create(queue="added", concurrency=1, source="admin")
    added = demo.sleep.using(queue_name="added")
    ids = [added.enqueue(seconds=0.1).id for _ in range(8)]
    wait_until(lambda: done("added"), 20, "the added queue's jobs ran")
    intervals = [(j.started_at, j.finished_at) for j in Job.objects.filter(pk__in=ids)]
    assert max_overlap(intervals) == 1


@pytest.mark.django_db(transaction=True)
def test_the_plain_claim_never_takes_a_job_a_limit_guards():
    """While no limit is in play a worker claims with CLAIM_PLAIN: a limited queue's jobs and
    keyed jobs are left to the claim within limits, and the probe says they are there."""
    with connection.cursor() as cursor:
        cursor.execute(queries.PROBE_LIMITS_ANY_QUEUE)
        assert cursor.fetchone()[0] is False
        queries.sync_limits(cursor, [QueueLimitSpec("lim", concurrency=5)])
    demo.echo.using(queue_name="lim").enqueue()
    tasks.customer_nap.enqueue(customer="a")
    free = demo.echo.enqueue()
    with connection.cursor() as cursor:
        queries.claim(cursor, worker=None, demand=10, queues=(), within_limits=False)
        assert [row[0] for row in queries.claimed(cursor)] == [int(free.id)]
        cursor.execute(queries.PROBE_LIMITS_ANY_QUEUE)
        assert cursor.fetchone()[0] is True


@pytest.mark.slow
def test_a_burst_worker_waits_for_held_back_jobs_rather_than_exiting(start_worker):
    """--burst exits once nothing is ready; a job held back by a limit is still ready."""
    limits = json.dumps({"one": {"concurrency": 1}})
    one = demo.sleep.using(queue_name="one")
    for _ in range(4):
        one.enqueue(seconds=0.2)
    worker = start_worker("--concurrency", "3", "--burst", JOBQUEUE_QUEUES=limits)
    assert worker.wait(60) == 0
    assert done("one")


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_a_concurrent_claim_of_the_same_limited_queue():
    """Two workers claim from a concurrency-2 queue at once. The first holds its transaction
    open after taking 2; the second's LOCK_LIMITS waits for it, and its CLAIM, with a
    snapshot taken after the first committed, takes nothing: 2 running, never 4."""
    with connection.cursor() as cursor:
        queries.sync_limits(cursor, [QueueLimitSpec("lim", concurrency=2)])
    for _ in range(6):
        demo.echo.using(queue_name="lim").enqueue()
    url = database_url()
    taken: dict[str, list] = {}

    def claim(name: str, db: psycopg.Connection) -> None:
        """LOCK_LIMITS and CLAIM in one transaction block, left open."""
        with db.cursor() as lock_cursor, db.cursor() as cursor:
            queries.claim(cursor, lock_cursor=lock_cursor, worker=None, demand=10, queues=())
            taken[name] = queries.claimed(cursor)

    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        claim("first", first)
        other = threading.Thread(target=claim, args=("second", second))
        other.start()
        other.join(1.0)
        assert other.is_alive(), "the second claim waits for the first's lock"
        first.commit()
        other.join(10)
        second.commit()
    assert (len(taken["first"]), len(taken["second"])) == (2, 0)
    assert Job.objects.filter(queue="lim", status=JobStatus.RUNNING).count() == 2


@pytest.mark.django_db(transaction=True)
def test_claims_in_one_transaction_take_no_more_than_the_limits_leave():
    """Two claims of one worker, each LOCK_LIMITS then CLAIM in a transaction: the second sees
    the first's jobs running and its starts logged, and takes nothing more from either queue;
    a claim whose statements do not share a transaction takes no limited job at all."""
    with connection.cursor() as cursor:
        queries.sync_limits(
            cursor, [QueueLimitSpec("lim", concurrency=2), QueueLimitSpec("rated", rate=3, per=60)]
        )
        worker = queries.register_worker(
            cursor, hostname="h", pid=1, queues=[], concurrency=1, lease=30
        )
    for queue in ["lim"] * 5 + ["rated"] * 5 + ["free"] * 2:
        demo.echo.using(queue_name=queue).enqueue()

    def claim(*, shared: bool) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN" if shared else "SELECT 1")
            queries.claim(cursor, worker=worker, demand=100, free=10, queues=())
            taken = sorted(row[9] for row in queries.claimed(cursor))
            cursor.execute("COMMIT" if shared else "SELECT 1")
        return taken

    for n in range(3):  # customer "k", limit 1, in the limited queue: both limits hold
        tasks.customer_nap.using(queue_name="lim").enqueue(customer="k", seconds=n)
    tasks.customer_nap.enqueue(customer="j")

    assert claim(shared=False) == ["free", "free"]
    first = claim(shared=True)
    assert first.count("lim") == 2 and first.count("rated") == 3 and first.count("default") == 1
    assert claim(shared=True) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(starts) FROM jobqueue_queuelimit WHERE queue = 'rated'")
        assert cursor.fetchone()[0] == 3


def test_a_rate_limited_job_that_reaches_its_child_late_goes_back_unstarted(execution_log):
    """Past its start-by deadline the child does not run the job; the ack puts it back in the
    queue with its attempt refunded and no run recorded (a cancel requested meanwhile wins)."""
    job_id = int(tasks.record.enqueue(n=1).id)
    other_id = int(tasks.record.enqueue(n=2).id)
    with connection.cursor() as cursor:
        queries.claim(cursor, worker=None, demand=2, queues=())
        rows = {row[0]: row for row in queries.claimed(cursor)}
    executor = Executor(progress_connection=None, worker_name="test:1")
    outcomes = []
    for jid in (job_id, other_id):
        row = rows[jid]
        assignment = Assignment(jid, row[10], row[1], row[2], row[3], row[4], row[6],
                                start_by=time.monotonic() - START_SLACK)  # fmt: skip
        report = executor.execute(assignment)
        assert report.kind == "late"
        outcome = decide(
            report,
            token=row[10],
            attempts=1,
            max_attempts=3,
            now=datetime.now(UTC),
            retry_delay=0,
            worker="test:1",
        )
        outcomes.append(outcome.as_row())
    Job.objects.filter(pk=other_id).update(cancel_requested=True)
    with connection.cursor() as cursor:
        queries.ack(cursor, worker=None, worker_name="test:1", outcomes=outcomes)
    job, other = Job.objects.get(pk=job_id), Job.objects.get(pk=other_id)
    assert (job.status, job.attempts, job.runs, job.errors) == (JobStatus.QUEUED, 0, [], [])
    assert other.status == JobStatus.CANCELLED
    assert other.errors[-1]["message"] == "cancelled before it started"
    assert execution_log() == [], "the task never ran"


@pytest.mark.parametrize(
    "text, expected",
    [("10/s", (10, 1.0)), ("100/min", (100, 60.0)), ("1000/h", (1000, 3600.0)),
     ("5/30s", (5, 30.0)), (" 2 / 1.5 s ", (2, 1.5))],
)  # fmt: skip
def test_rates_parse(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "options, message",
    [({"rate": "10 per second"}, "['rate'] must look like"), ({"rate": "0/s"}, "at least 1"),
     ({"rate": "20000/h"}, "at most 10,000 starts per window"),
     ({"concurrency": 0}, "positive integer"), ({"concurrency": True}, "positive integer"),
     ({"limit": 3}, "unknown keys: limit"), ({"execution": "fork"}, "process, thread or async")],
)  # fmt: skip
def test_bad_limits_are_refused_naming_the_queue(options, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        QueueLimitSpec.from_setting("reports", options)
    assert "QUEUES['reports']" in str(raised.value)


def test_a_periodic_schedule_of_a_keyed_task_gives_its_jobs_the_key():
    schedule = PeriodicSchedule.from_settings(
        "nightly",
        {"task": "tests.tasks.customer_nap", "cron": "@daily", "kwargs": {"customer": "z"}},
    )
    assert (schedule.concurrency_key, schedule.concurrency_limit) == ("customer:z", 1)
