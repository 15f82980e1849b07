"""Periodic jobs: ticks in time zones with DST, the system checks, and exactly one job per
tick when workers race, on real PostgreSQL and real worker processes."""

import json
import re
import signal
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from jobqueue.checks import check_settings
from jobqueue.models import Job, Schedule
from jobqueue.scheduling.periodic import PeriodicEnqueuer, PeriodicSchedule
from tests.conftest import database_url, db_now, wait_until

NEW_YORK = ZoneInfo("America/New_York")


def schedule(cron: str, zone: str = "UTC", catch_up: int = 1, name: str = "s") -> PeriodicSchedule:
    spec = {"task": "demo.echo", "cron": cron, "timezone": zone, "catch_up": catch_up}
    return PeriodicSchedule.from_settings(name, spec)


def local(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=NEW_YORK)


# ------------------------------------------------------------------ ticks, no database
def test_a_time_the_zone_skips_runs_once_at_the_end_of_the_gap():
    # New York skips 02:00-03:00 on 2026-03-08.
    ticks = schedule("30 2 * * *", "America/New_York", catch_up=10).ticks_due(
        local(2026, 3, 7, 12), local(2026, 3, 10, 12)
    )
    assert ticks == [local(2026, 3, 8, 3, 0), local(2026, 3, 9, 2, 30), local(2026, 3, 10, 2, 30)]


def test_a_time_the_zone_repeats_runs_once():
    # New York repeats 01:00-02:00 on 2026-11-01: 01:30 EDT, then 01:30 EST an hour later.
    s = schedule("30 1 * * *", "America/New_York", catch_up=10)
    ticks = s.ticks_due(local(2026, 10, 31, 12), local(2026, 11, 2, 12))
    assert [t.astimezone(UTC) for t in ticks] == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first pass
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST
    ]
    # Walking forward agrees: the tick after the first 01:30 is the next day's.
    assert s.next_tick(ticks[0]) == ticks[1]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize(
    "cron", ["* * * * *", "*/15 * * * *", "30 * * * *", "@hourly", "30 1 * * *", "30 2 * * *"]
)
def test_a_worker_checking_every_20_s_runs_the_ticks_of_the_forward_walk_across_dst(zone, cron):
    """A worker looks every 20 s, from the tick it ran last, through the days a zone
    repeats and skips an hour: it runs exactly the ticks next_tick walks through, the
    repeated hour's included (an hourly schedule ran none of them on the fall-back day)."""
    s = schedule(cron, zone, catch_up=5)
    days = [datetime(2026, 10, 24, 20, tzinfo=UTC), datetime(2026, 10, 31, 22, tzinfo=UTC)]
    days += [datetime(2026, 3, 7, 22, tzinfo=UTC), datetime(2026, 3, 28, 20, tzinfo=UTC)]
    for day in days:
        last, ran = day, []
        for step in range(0, 12 * 3600, 20):
            now = day + timedelta(seconds=step)
            due = s.ticks_due(last, now)
            assert all(tick <= now for tick in due), f"{cron} in {zone}: a tick before its time"
            ran += due
            last = due[-1] if due else last
        walked, tick = [], s.next_tick(day)
        while tick <= day + timedelta(seconds=12 * 3600 - 20):
            walked.append(tick)
            tick = s.next_tick(tick)
        assert ran == walked, f"{cron} in {zone} from {day}"


def test_catch_up_after_downtime_across_the_repeated_hour_keeps_the_newest_ticks():
    # Berlin repeats 02:00-03:00 on 2026-10-25 (00:00-01:00 UTC, then 01:00-02:00 UTC):
    # every 15 minutes of UTC is a tick, the repeated hour's too.
    s = schedule("*/15 * * * *", "Europe/Berlin", catch_up=6)
    down_since = datetime(2026, 10, 24, 12, tzinfo=UTC)
    ticks = s.ticks_due(down_since, datetime(2026, 10, 25, 1, 20, tzinfo=UTC))
    first = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    assert [t.astimezone(UTC) for t in ticks] == [
        first + timedelta(minutes=15 * n) for n in range(6)
    ]


def test_missed_ticks_fire_once_the_latest_unless_catch_up_allows_more():
    last, now = datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 5, 10, tzinfo=UTC)
    assert schedule("@hourly").ticks_due(last, now) == [datetime(2026, 1, 1, 5, tzinfo=UTC)]
    assert schedule("0 * * * *", catch_up=3).ticks_due(last, now) == [
        datetime(2026, 1, 1, h, tzinfo=UTC) for h in (3, 4, 5)
    ]
    assert schedule("0 * * * *", catch_up=100).ticks_due(last, now) == [
        datetime(2026, 1, 1, h, tzinfo=UTC) for h in (1, 2, 3, 4, 5)
    ]
    # A tick exactly at now is due; nothing after last_tick is due twice.
    assert schedule("@hourly").ticks_due(last, datetime(2026, 1, 1, 1, tzinfo=UTC)) == [
        datetime(2026, 1, 1, 1, tzinfo=UTC)
    ]
    assert schedule("@hourly").ticks_due(now, now) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"task": "demo.echo", "cron": "61 * * * *"}, "invalid cron '61 * * * *'"),
        ({"task": "demo.echo", "cron": "@sometimes"}, "invalid cron '@sometimes'"),
        ({"task": "demo.nothing", "cron": "* * * * *"}, "no task at 'demo.nothing'"),
        ({"task": "demo.echo", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"task": "demo.echo", "cron": "* * * * *", "every": 5}, "unknown keys ['every']"),
        ({"task": "demo.echo", "cron": "* * * * *", "catch_up": 0}, "catch_up"),
        ({"task": "demo.echo", "cron": "* * * * *", "queue": "no spaces"}, "queue name"),
    ],
)
def test_an_invalid_schedule_is_a_system_check_error_naming_it(spec, message):
    with override_settings(JOBQUEUE={"PERIODIC": {"nightly-report": spec}}):
        errors = check_settings()
    assert [e.id for e in errors] == ["jobqueue.E005"]
    assert "JOBQUEUE['PERIODIC']['nightly-report']" in errors[0].msg
    assert message in errors[0].msg


def test_a_valid_schedule_passes_the_checks():
    spec = {"task": "demo.echo", "cron": "@daily", "kwargs": {"a": 1}, "timezone": "Europe/Berlin"}
    with override_settings(JOBQUEUE={"PERIODIC": {"nightly": spec}}):
        assert check_settings() == []


# ------------------------------------------------------------------ the database
def past_due(name: str, minutes: int) -> None:
    """The schedule's row as if its last tick was ``minutes`` ago."""
    Schedule.objects.update_or_create(
        name=name, defaults={"last_tick": datetime.now(UTC) - timedelta(minutes=minutes)}
    )


@pytest.mark.django_db(transaction=True)
def test_workers_racing_on_the_same_ticks_enqueue_each_once():
    """Eight enqueuers, each on its own connection, look at once at a schedule three ticks
    behind (catch_up 3): the ticks' jobs are three, not 24, and last_tick is the newest."""
    s = schedule("* * * * *", catch_up=3, name="race")
    past_due("race", minutes=3)
    barrier = threading.Barrier(8)

    def enqueue() -> None:
        enqueuer = PeriodicEnqueuer([s])
        with psycopg.connect(database_url(), autocommit=True) as db, db.cursor() as cur:
            barrier.wait()
            enqueuer.run(cur)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    jobs = list(Job.objects.filter(task="demo.echo").order_by("scheduled_at"))
    assert len(jobs) == 3
    ticks = [j.scheduled_at for j in jobs]
    assert len(set(ticks)) == 3 and all(t.second == 0 for t in ticks)
    row = Schedule.objects.get(name="race")
    assert row.last_tick == ticks[-1] and row.last_job_id == jobs[-1].pk


@pytest.mark.django_db(transaction=True)
def test_a_disabled_schedule_enqueues_nothing_and_enabling_does_not_fire_the_backlog():
    s = schedule("* * * * *", catch_up=5, name="toggled")
    past_due("toggled", minutes=5)
    assert Schedule.objects.filter(name="toggled").disable() == 1
    with connection.cursor() as cur:
        PeriodicEnqueuer([s]).run(cur.cursor)
    assert not Job.objects.exists()

    assert Schedule.objects.filter(name="toggled").enable() == 1
    with connection.cursor() as cur:
        PeriodicEnqueuer([s]).run(cur.cursor)
    assert not Job.objects.exists(), "ticks from while it was off fired"
    assert Schedule.objects.get(name="toggled").enabled


# ------------------------------------------------------------------ real workers
def every_second(catch_up: int) -> str:
    """JOBQUEUE_PERIODIC for a schedule that ticks every second. Its jobs go to a queue no
    test worker serves, so no job is ever claimed or rescued and each row's scheduled_at
    stays its tick: the rows are the record of what was enqueued."""
    spec = {"task": "demo.echo", "cron": "* * * * * *", "queue": "ticks", "catch_up": catch_up}
    return json.dumps({"every-second": spec})


ENQUEUED = re.compile(r"periodic every-second: enqueued job\(s\) \[([\d, ]+)\]")


def ticks() -> list[datetime]:
    """Each job's tick (its scheduled_at), in order."""
    return list(Job.objects.order_by("scheduled_at").values_list("scheduled_at", flat=True))


def enqueued_by(worker) -> set[int]:
    """The ids of the jobs this worker's log says it enqueued."""
    return {int(i) for ids in ENQUEUED.findall(worker.output()) for i in ids.split(",")}


@pytest.mark.slow
def test_three_workers_enqueue_exactly_one_job_per_tick_and_a_killed_one_loses_none(
    start_worker,
):
    """Three workers on a schedule that ticks every second. The worker that enqueued the
    latest tick is killed (-9): the others go on, and no tick is lost or doubled. With every
    worker down the missed ticks fire once, the latest only, when one comes back.

    While the three run, catch_up is 100: a worker the machine slows past a tick enqueues
    the ticks it missed at its next look, so the rows must hold every second exactly once,
    whatever the load. The worker that comes back has the default catch_up of 1."""
    racing = every_second(catch_up=100)
    workers = [start_worker("--queues", "default", JOBQUEUE_PERIODIC=racing) for _ in range(3)]
    wait_until(lambda: len(ticks()) >= 5, 60, "five ticks were enqueued")
    latest = max(Job.objects.values_list("id", flat=True))
    # The log line follows the commit: wait for it rather than read it once.
    wait_until(lambda: any(latest in enqueued_by(w) for w in workers), 30, "the tick was logged")
    winner = next(w for w in workers if latest in enqueued_by(w))
    winner.signal(signal.SIGKILL)
    winner.wait(timeout=10)
    count = len(ticks())
    wait_until(lambda: len(ticks()) >= count + 5, 60, "five more ticks after the kill")
    for worker in workers:
        worker.stop()
    before = ticks()
    steps = {(b - a).total_seconds() for a, b in pairwise(before)}
    assert steps == {1.0} and all(at.microsecond == 0 for at in before), (
        f"not one job per second: {before}"
    )
    assert sum(bool(enqueued_by(w)) for w in workers) >= 2, "one worker enqueued every tick"

    # Every worker down until the database's clock is 4 s past the last tick: at least three
    # ticks are missed (before[-1] + 1 s, + 2 s, + 3 s).
    wait_until(lambda: db_now() >= before[-1] + timedelta(seconds=4), 30, "3 ticks were missed")
    back_at = db_now()
    start_worker("--queues", "default", JOBQUEUE_PERIODIC=every_second(catch_up=1))
    wait_until(lambda: len(ticks()) >= len(before) + 3, 60, "ticks resumed")
    after = ticks()[len(before) :]
    # The first look after the restart (at back_at or later) enqueues only the newest tick
    # due then: none of the ticks already over at back_at - 1 s fired.
    assert after[0] > back_at - timedelta(seconds=1), f"an older missed tick fired: {after}"
    assert all(at.microsecond == 0 for at in after)
    assert Job.objects.filter(task="demo.echo").count() == len(set(ticks()))
