"""What went wrong, read from the rows: the queue's jobs and the recording task's runs.

Used by the fault tests and the soak, on the database they own, after the
workers have drained. Only jobs of the recording task are looked at.

A run's interval is [started_at, finished_at], or [started_at, last_seen]
if it never finished (its process was killed): last_seen is at most ~50 ms
stale while the process lives, so a killed run may be cut short by that
much, and so may a run that lost its recording connection to a database
restart. Both can only hide an overlap, never invent one.
"""

from dataclasses import dataclass
from datetime import datetime

import psycopg

from bench.recording import TASK_PATHS, expected_result

OVERLAPS_SQL = """
SELECT a.job_id, a.pid, b.pid,
       greatest(a.started_at, b.started_at),
       least(coalesce(a.finished_at, a.last_seen), coalesce(b.finished_at, b.last_seen))
FROM soak_run a JOIN soak_run b ON a.job_id = b.job_id AND a.id < b.id
WHERE a.pid <> b.pid
  AND a.started_at < coalesce(b.finished_at, b.last_seen)
  AND b.started_at < coalesce(a.finished_at, a.last_seen)
ORDER BY a.job_id
"""

# For every job finished by two runs or more: who finished it first and when,
# and when the next run began (the job's re-claim, within milliseconds).
REPEATS_SQL = """
WITH finished AS (
    SELECT job_id, supervisor_pid, started_at, finished_at,
           row_number() OVER (PARTITION BY job_id ORDER BY finished_at) AS n
    FROM soak_run WHERE finished_at IS NOT NULL
)
SELECT f.job_id, f.supervisor_pid, f.finished_at,
       (SELECT min(r.started_at) FROM soak_run r
        WHERE r.job_id = f.job_id AND r.started_at > f.started_at)
FROM finished f
WHERE f.n = 1 AND EXISTS (SELECT 1 FROM finished g WHERE g.job_id = f.job_id AND g.n = 2)
ORDER BY f.job_id
"""


@dataclass(slots=True)
class Repeat:
    """A job finished more than once: the first finish, and when it began again."""

    job_id: int
    first_supervisor: int
    first_finished: datetime
    next_started: datetime


@dataclass(slots=True)
class Findings:
    jobs: int
    by_status: dict[str, int]
    lost: list[int]  # not succeeded
    overlapped: list[int]  # two runs on two processes at the same time
    overlap_seconds: float  # the longest of those overlaps
    repeated: list[Repeat]  # finished by two runs or more
    wrong: list[int]  # succeeded with a result that is not the expected one
    runs: int


def examine(conn: psycopg.Connection, job_ids: list[int] | None = None) -> Findings:
    """Everything above, for ``job_ids`` (default: every job of the recording task)."""
    rows = conn.execute(
        "SELECT id, status, kwargs, result FROM jobqueue_job WHERE task = ANY(%s)", [TASK_PATHS]
    ).fetchall()
    if job_ids is not None:
        wanted = set(job_ids)
        rows = [r for r in rows if r[0] in wanted]
    ids = {r[0] for r in rows}
    by_status: dict[str, int] = {}
    for _, status, _, _ in rows:
        by_status[status] = by_status.get(status, 0) + 1
    lost = sorted(job_id for job_id, status, _, _ in rows if status != "succeeded")
    wrong = sorted(
        job_id
        for job_id, status, kwargs, result in rows
        if status == "succeeded" and result != expected_result(kwargs["key"])
    )
    overlaps = [o for o in conn.execute(OVERLAPS_SQL).fetchall() if o[0] in ids]
    repeats = [Repeat(*r) for r in conn.execute(REPEATS_SQL).fetchall() if r[0] in ids]
    runs = conn.execute(
        "SELECT count(*) FROM soak_run WHERE job_id = ANY(%s)", [sorted(ids)]
    ).fetchone()
    return Findings(
        jobs=len(rows),
        by_status=by_status,
        lost=lost,
        overlapped=sorted({o[0] for o in overlaps}),
        overlap_seconds=max(((o[4] - o[3]).total_seconds() for o in overlaps), default=0.0),
        repeated=repeats,
        wrong=wrong,
        runs=runs[0] if runs else 0,
    )


def running(conn: psycopg.Connection) -> list[tuple[int, int, int]]:
    """Runs going on now, as ``(job_id, child pid, supervisor pid)``: which child runs what."""
    return conn.execute(
        "SELECT job_id, pid, supervisor_pid FROM soak_run WHERE finished_at IS NULL "
        "AND last_seen > clock_timestamp() - interval '1 second' ORDER BY id"
    ).fetchall()


def unfinished(conn: psycopg.Connection, job_ids: list[int]) -> int:
    """How many of ``job_ids`` are not in a final state yet (queued or running)."""
    row = conn.execute(
        "SELECT count(*) FROM jobqueue_job WHERE id = ANY(%s) "
        "AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        [job_ids],
    ).fetchone()
    return row[0] if row else 0
