"""Periodic jobs (jobqueue/scheduling/periodic.py): the schedules' rows and the enqueue of their
ticks, exactly once per tick however many workers race."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

# Every declared schedule gets its row the first time a worker (or the admin, or
# the API) looks, with last_tick = now(): a new schedule starts at its next tick
# instead of firing ticks from before it existed. Concurrent inserts of one name
# wait on each other's index entry and the later one does nothing.
ENSURE_SCHEDULES = """
INSERT INTO jobqueue_schedule (name, enabled, last_tick)
SELECT name, true, now() FROM unnest(%(names)s::text[]) AS n(name)
ON CONFLICT (name) DO NOTHING
"""

# The database's clock (what is due is reckoned on it, not on the host's), and
# the newest tick of the named schedules; one row with NULLs when none exists yet.
SCHEDULE_STATES = """
SELECT now(), s.name, s.last_tick
FROM (SELECT 1) AS one LEFT JOIN jobqueue_schedule AS s ON s.name = ANY(%(names)s)
"""

# Enqueue the due ticks of one schedule: move last_tick from the value the worker
# read (%(seen)s) to the newest tick, and insert one job per tick, in one
# statement, so one transaction (autocommit): the new last_tick and the jobs
# commit together or not at all.
# Who holds what: the UPDATE locks the schedule's row until the commit. A second
# worker enqueuing the same ticks waits on that lock, then re-reads the committed
# row (EvalPlanQual): last_tick is no longer what it read, so its UPDATE matches
# no row and its INSERT, which reads only the updated row, inserts nothing. The
# admin's enable/disable (models.ScheduleQuerySet) updates the same row, so they
# serialise too: no job is enqueued for a schedule disabled before this commits.
# The newest tick's job takes the id written to last_job_id (the foreign key is
# checked at the end of the statement, once the job is in).
ENQUEUE_TICKS = """
WITH advanced AS (
    UPDATE jobqueue_schedule
    SET last_tick = %(newest)s,
        last_job_id = nextval(pg_get_serial_sequence('jobqueue_job', 'id')::regclass)
    WHERE name = %(name)s AND enabled AND last_tick = %(seen)s
    RETURNING last_job_id
)
INSERT INTO jobqueue_job (id, task, queue, priority, max_attempts, timeout_seconds, created_at,
                          scheduled_at, args, kwargs, status, errors, progress_message, attempts,
                          cancel_requested, concurrency_key, concurrency_limit)
SELECT CASE WHEN t.tick = %(newest)s THEN a.last_job_id
            ELSE nextval(pg_get_serial_sequence('jobqueue_job', 'id')::regclass) END,
       %(task)s, %(queue)s, %(priority)s, %(max_attempts)s, %(timeout)s, now(), t.tick,
       %(args)s::jsonb, %(kwargs)s::jsonb, 'queued', '[]', '', 0, false, %(key)s, %(limit)s
FROM advanced AS a CROSS JOIN unnest(%(ticks)s::timestamptz[]) AS t(tick)
ORDER BY t.tick
RETURNING id
"""


def ensure_schedules(cursor: Any, names: Sequence[str]) -> None:
    """Create the rows of the named schedules that have none yet."""
    cursor.execute(ENSURE_SCHEDULES, {"names": list(names)})


def schedule_states(cursor: Any, names: Sequence[str]) -> tuple[datetime, list[tuple]]:
    """The database's now(), and ``(name, last_tick)`` of the named schedules."""
    cursor.execute(SCHEDULE_STATES, {"names": list(names)})
    rows = cursor.fetchall()
    return rows[0][0], [row[1:] for row in rows if row[1] is not None]


def enqueue_ticks(
    cursor: Any, *, schedule: Any, seen: datetime, ticks: Sequence[datetime]
) -> list[int]:
    """Enqueue ``ticks`` (oldest first) of ``schedule`` (a periodic.PeriodicSchedule) if its
    last_tick is still ``seen``; returns the ids of the jobs, [] when another got there first."""
    cursor.execute(
        ENQUEUE_TICKS,
        {
            "name": schedule.name,
            "seen": seen,
            "newest": ticks[-1],
            "ticks": list(ticks),
            "task": schedule.task,
            "queue": schedule.queue,
            "priority": schedule.priority,
            "max_attempts": schedule.max_attempts,
            "timeout": schedule.timeout_seconds,
            "args": schedule.args_json,
            "kwargs": schedule.kwargs_json,
            "key": schedule.concurrency_key,
            "limit": schedule.concurrency_limit,
        },
    )
    return [row[0] for row in cursor.fetchall()]
