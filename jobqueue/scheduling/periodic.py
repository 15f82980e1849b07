"""Periodic jobs: schedules declared in ``JOBQUEUE["PERIODIC"]``, enqueued by any live worker.

Exactly one job per tick, whatever the number of workers and hosts, with no
leader: every schedule has one row (``Schedule``) whose ``last_tick`` is the
newest tick enqueued. A worker that finds ticks due after it moves it forward
with a compare-and-set and inserts their jobs in the same statement, so in the
same transaction (``queries.ENQUEUE_TICKS`` says who holds which lock). Of two
workers racing on a tick one wins; the other's compare-and-set matches nothing
and inserts nothing. Ticks are reckoned against the database's clock, so hosts
whose clocks disagree still agree on what is due.

The cron expressions are parsed and walked by ``cronsim`` in the schedule's
time zone, which handles daylight saving time as Debian's cron does: a tick in
the hour a zone skips fires once, at the end of the gap; a tick in the hour a
zone repeats fires once, in its first pass.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from cronsim import CronSim, CronSimError
from django.tasks.exceptions import InvalidTask

from jobqueue import keys, queries
from jobqueue.conf import JobQueueSettings, get_settings
from jobqueue.job_fields import shared_fields

if TYPE_CHECKING:
    from jobqueue.models import Schedule

logger = logging.getLogger("jobqueue.periodic")

# cron's shorthands, which cronsim leaves to its callers.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
KEYS = {"task", "cron", "args", "kwargs", "queue", "priority", "timezone", "catch_up"}
# Most missed ticks a schedule may catch up after downtime (its "catch_up" option).
MAX_CATCH_UP = 1000
# A worker looks at the schedules at least this often (seconds), even when no tick
# is near: a schedule enabled again, or a clock that moved, is seen within it.
MAX_SLEEP = 60.0
# Seconds past a tick at which a worker looks, so that a host clock a little
# ahead of the database's does not look just before the tick is due there.
SLACK = 0.05


class ScheduleError(ValueError):
    """A schedule in JOBQUEUE["PERIODIC"] is invalid; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodicSchedule:
    """One declared schedule, checked, with the columns of the jobs it enqueues."""

    name: str
    cron: str  # as declared, an alias or 5 fields (6 with seconds first)
    timezone: ZoneInfo
    catch_up: int  # missed ticks enqueued after downtime, the newest ones
    task: str
    queue: str
    priority: int
    max_attempts: int
    timeout_seconds: float | None
    args_json: str
    kwargs_json: str
    concurrency_key: str | None = None  # jobqueue/keys.py, made from the schedule's arguments
    concurrency_limit: int | None = None

    @classmethod
    def from_settings(cls, name: str, spec: Any) -> "PeriodicSchedule":
        """The schedule ``name`` as declared; ScheduleError says what is wrong with it."""
        from jobqueue.backend import JobQueueBackend, json_text, load_task

        def fail(problem: str) -> ScheduleError:
            return ScheduleError(f"JOBQUEUE['PERIODIC'][{name!r}]: {problem}")

        if not isinstance(spec, dict):
            raise fail(f"must be a dict, got {type(spec).__name__}")
        if unknown := set(spec) - KEYS:
            raise fail(f"unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
        if missing := {"task", "cron"} - set(spec):
            raise fail(f"missing {sorted(missing)}")
        cron = ALIASES.get(spec["cron"], spec["cron"]) if isinstance(spec["cron"], str) else None
        try:
            CronSim(cron or "", datetime.now(UTC))
        except (CronSimError, ValueError, IndexError) as e:
            raise fail(f"invalid cron {spec['cron']!r}: {e or 'unreadable'}") from e
        try:
            zone = ZoneInfo(spec.get("timezone", "UTC"))
        except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
            raise fail(f"unknown timezone {spec.get('timezone')!r}") from e
        catch_up = spec.get("catch_up", 1)
        if type(catch_up) is not int or not 1 <= catch_up <= MAX_CATCH_UP:
            raise fail(f"catch_up must be an integer from 1 to {MAX_CATCH_UP}, got {catch_up!r}")
        try:
            task = load_task(spec["task"])
            changes = {k: spec[k] for k in ("queue", "priority") if k in spec}
            if "queue" in changes:
                changes["queue_name"] = changes.pop("queue")
            task = task.using(**changes)
            backend = task.get_backend()
            if not isinstance(backend, JobQueueBackend):
                raise fail(f"task {spec['task']!r} is not on jobqueue's backend")
            backend.validate_task(task)
            args_json = json_text(list(spec.get("args", [])), "args")
            kwargs_json = json_text(dict(spec.get("kwargs", {})), "kwargs")
            key = keys.concurrency_key(task, json.loads(args_json), json.loads(kwargs_json))
        except ScheduleError:
            raise
        except (InvalidTask, TypeError, ValueError) as e:
            raise fail(str(e)) from e
        shared = shared_fields(task)
        return cls(
            name=name,
            cron=spec["cron"],
            timezone=zone,
            catch_up=catch_up,
            task=shared.task,
            queue=shared.queue,
            priority=shared.priority,
            max_attempts=shared.max_attempts,
            timeout_seconds=shared.timeout_seconds,
            args_json=args_json,
            kwargs_json=kwargs_json,
            concurrency_key=key,
            concurrency_limit=getattr(task, "concurrency_limit", 1) if key else None,
        )

    @property
    def expression(self) -> str:
        return ALIASES.get(self.cron, self.cron)

    def ticks_due(self, last_tick: datetime, now: datetime) -> list[datetime]:
        """The ticks after ``last_tick`` up to ``now``, oldest first: the newest ``catch_up``.

        Walking back from now costs ``catch_up`` steps however long the downtime, and
        finds the ticks ``next_tick`` walks forward through, DST's skipped and repeated
        hours included (tests/test_periodic.py checks both walks agree across them).
        Every comparison is made in UTC: two datetimes of one zone compare by their wall
        times, fold ignored, so a tick of the repeated hour's second pass (02:00, fold 1)
        came before the first pass's last one (02:59) and was taken as already run: an
        hourly or finer schedule ran nothing in the repeated hour of the fall-back day.
        """
        last = last_tick.astimezone(UTC)
        # Inclusive of now: cronsim skips a start it matches exactly, not one with microseconds.
        start = (now + timedelta(microseconds=1)).astimezone(self.timezone)
        ticks: list[datetime] = []
        for tick in CronSim(self.expression, start, reverse=True):
            if tick.astimezone(UTC) <= last or len(ticks) == self.catch_up:
                break
            ticks.append(tick)
        return ticks[::-1]

    def next_tick(self, after: datetime) -> datetime:
        """The first tick after ``after``."""
        return next(CronSim(self.expression, after.astimezone(self.timezone)))


def load_schedules(conf: JobQueueSettings) -> list[PeriodicSchedule]:
    """Every declared schedule; the first invalid one raises ScheduleError."""
    return [PeriodicSchedule.from_settings(n, s) for n, s in sorted(conf.PERIODIC.items())]


def declared_schedule(name: str) -> PeriodicSchedule:
    """The schedule ``name`` as the current settings declare it."""
    return PeriodicSchedule.from_settings(name, get_settings().PERIODIC[name])


@dataclass(frozen=True, slots=True, kw_only=True)
class ShownSchedule:
    """A schedule as the API and the admin show it: its row beside what settings declare.

    The row (models.Schedule) knows only what the database keeps; the declaration
    comes from here, so the model need not import this module (which enqueues through
    the backend, which imports the models).
    """

    name: str
    declared: PeriodicSchedule
    enabled: bool
    last_tick: datetime
    last_job_id: int | None
    next_run_at: datetime | None  # the next tick from now, None while the schedule is off

    @classmethod
    def of(cls, schedule: "Schedule") -> "ShownSchedule":
        declared = declared_schedule(schedule.name)
        return cls(
            name=schedule.name,
            declared=declared,
            enabled=schedule.enabled,
            last_tick=schedule.last_tick,
            last_job_id=schedule.last_job_id,
            next_run_at=declared.next_tick(datetime.now(UTC)) if schedule.enabled else None,
        )


def schedule_errors(conf: JobQueueSettings) -> list[ScheduleError]:
    """What is wrong with each declared schedule (the system checks' view)."""
    errors = []
    for name, spec in sorted(conf.PERIODIC.items()):
        try:
            PeriodicSchedule.from_settings(name, spec)
        except ScheduleError as e:
            errors.append(e)
    return errors


class PeriodicEnqueuer:
    """A worker's part in periodic jobs: at each tick time, enqueue what is due.

    Every worker runs one; whichever reaches a tick first enqueues it. A tick
    missed while no worker was up (or while the one about to enqueue it died)
    is found by the next look of any worker, as a tick after ``last_tick``.
    """

    def __init__(self, schedules: list[PeriodicSchedule]) -> None:
        self.schedules = {s.name: s for s in schedules}
        # time.monotonic() at which to look next: at once, then at each tick.
        self.next_check = time.monotonic() if schedules else float("inf")

    @classmethod
    def from_settings(cls, conf: JobQueueSettings) -> "PeriodicEnqueuer":
        return cls(load_schedules(conf))

    def due(self, now: float) -> bool:
        return now >= self.next_check

    def run(self, cursor: psycopg.Cursor) -> None:
        """Enqueue the ticks due (one statement per schedule that has some), then note
        when the next one is. Database errors other than a lost connection are
        logged and leave the tick to the next look."""
        names = list(self.schedules)
        queries.ensure_schedules(cursor, names)
        db_now, states = queries.schedule_states(cursor, names)
        # A disabled schedule's enqueue is refused by the statement itself, under the
        # row's lock, so that a disable racing this look is honoured too.
        for name, last_tick in states:
            schedule = self.schedules[name]
            if ticks := schedule.ticks_due(last_tick, db_now):
                self._enqueue(cursor, schedule, last_tick, ticks)
        wait = min(s.next_tick(db_now) for s in self.schedules.values()) - db_now
        self.next_check = time.monotonic() + min(wait.total_seconds(), MAX_SLEEP) + SLACK

    def _enqueue(
        self, cursor: psycopg.Cursor, s: PeriodicSchedule, seen: datetime, ticks: list[datetime]
    ) -> None:
        try:
            ids = queries.enqueue_ticks(cursor, schedule=s, seen=seen, ticks=ticks)
        except psycopg.OperationalError:
            raise
        except psycopg.Error:
            logger.exception("periodic %s: could not enqueue ticks %s", s.name, ticks)
            return
        if ids:
            logger.info("periodic %s: enqueued job(s) %s for %s", s.name, ids, ticks)
