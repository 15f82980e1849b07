"""A worker's registration and lease: the heartbeat of the jobs in hand, the rescue of the jobs
of workers past their lease, and progress from task code (which renews nothing, but is fenced
the same way)."""

from collections.abc import Sequence
from typing import Any

from jobqueue.queries.channels import EVENTS_CHANNEL, announce_ids

REGISTER_WORKER = """
INSERT INTO jobqueue_worker
    (hostname, pid, queues, concurrency, lease_seconds, started_at, last_heartbeat)
VALUES (%(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(lease)s, now(), now())
RETURNING id
"""

UNREGISTER_WORKER = "DELETE FROM jobqueue_worker WHERE id = %(worker)s"

# The worker's heartbeat, and the lease of the jobs it has in hand, in one
# statement. Only the (id, token) pairs the worker holds are renewed, so a job
# rescued and re-claimed since is not (its token changed). Those rows are also
# re-adopted: worker_id is set again, as an admin deleting the worker row sets
# it NULL; to NULL if the row is gone (the worker registers again, then beats).
# Returns whether the worker row exists, the ids still held, and those of them
# whose cancellation was requested. A job in hand but not returned was taken
# from this worker: it stops running it.
HEARTBEAT = """
WITH me AS (
    UPDATE jobqueue_worker SET last_heartbeat = now(), lost_at = NULL
    WHERE id = %(worker)s RETURNING id
), held AS (
    UPDATE jobqueue_job AS j SET heartbeat_at = now(), worker_id = (SELECT id FROM me)
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS h(id, token)
    WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
    RETURNING j.id, j.cancel_requested
)
SELECT (SELECT count(*) FROM me) AS alive,
       COALESCE((SELECT array_agg(id) FROM held), '{}') AS held_ids,
       COALESCE((SELECT array_agg(id) FROM held WHERE cancel_requested), '{}') AS cancel_ids
"""

# Rescue a bounded batch of running jobs whose lease ran out (their worker was
# killed, lost power or lost its connection): re-queue those with attempts
# left, fail the rest with a "worker lost" error, cancel those asked to stop.
# Clearing lease_token fences the lost attempt out: if its worker comes back,
# its ack, progress and heartbeat match nothing. By then its children have
# stopped themselves (self-fencing stops them a margin before the lease ends).
#
# A job's lease is its holder's: the LEASE of the worker that holds it, on that worker's
# row, for its children self-fence by that one. Workers of one deployment may differ (a
# rolling deploy that shortens LEASE): a rescuer that judged by its own shorter lease
# would take healthy jobs from workers still heart-beating at their own pace, and run
# them twice. The rescuer's own lease is a floor too (the index range below, and a job
# whose worker row is gone or predates the column). A lost job's worker may be gone.
RESCUE = f"""
WITH lost AS (
    SELECT j.id FROM jobqueue_job AS j LEFT JOIN jobqueue_worker AS w ON w.id = j.worker_id
    WHERE j.status = 'running' AND j.heartbeat_at < now() - make_interval(secs => %(lease)s)
      AND j.heartbeat_at < now() - make_interval(secs => COALESCE(w.lease_seconds, 0))
    ORDER BY j.heartbeat_at
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), rescued AS (
    UPDATE jobqueue_job AS j
    SET status = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.attempts < j.max_attempts THEN 'queued'
            ELSE 'failed' END,
        finished_at = CASE
            WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN now() END,
        scheduled_at = now(),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts,
            'type', 'jobqueue.exceptions.WorkerLost',
            'message', format('worker %%s stopped heart-beating (lease %%s s)',
                              j.worker_id, %(lease)s),
            'traceback', '',
            'at', now())),
        runs = j.runs || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'worker_id', j.worker_id, 'started_at', j.started_at,
            'finished_at', now(), 'outcome', 'lost')),
        worker_id = NULL,
        heartbeat_at = NULL,
        lease_token = NULL
    FROM lost WHERE j.id = lost.id
    RETURNING j.id, j.status, j.queue
), announced AS (
    {announce_ids("rescued")}
)
SELECT id, status, queue FROM rescued WHERE (SELECT count(*) FROM announced) >= 0
"""

# A worker is lost once its heartbeat is older than its own lease (and this one's).
MARK_LOST_WORKERS = """
UPDATE jobqueue_worker SET lost_at = now()
WHERE lost_at IS NULL AND last_heartbeat < now() - make_interval(secs => %(lease)s)
  AND last_heartbeat < now() - make_interval(secs => COALESCE(lease_seconds, 0))
"""

# Progress from task code, fenced by the attempt's token: returns no row when
# the attempt no longer holds the job (rescued, re-claimed, finished), else
# whether cancellation was requested, which makes every progress call the
# task's cancellation check point too.
PROGRESS = """
WITH updated AS (
    UPDATE jobqueue_job
    SET progress_percent = COALESCE(%(percent)s, progress_percent),
        progress_message = COALESCE(%(message)s, progress_message),
        progress_updated_at = now()
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
    RETURNING cancel_requested
)
SELECT cancel_requested, pg_notify(%(channel)s, %(id)s::text) FROM updated
"""


def register_worker(
    cursor: Any, *, hostname: str, pid: int, queues: Sequence[str], concurrency: int, lease: float
) -> int:
    from psycopg.types.json import Jsonb

    cursor.execute(
        REGISTER_WORKER,
        {
            "hostname": hostname,
            "pid": pid,
            "queues": Jsonb(list(queues)),
            "concurrency": concurrency,
            "lease": lease,
        },
    )
    return cursor.fetchone()[0]


def unregister_worker(cursor: Any, *, worker: int) -> None:
    cursor.execute(UNREGISTER_WORKER, {"worker": worker})


def heartbeat(
    cursor: Any, *, worker: int, jobs: Sequence[tuple[int, int]]
) -> tuple[bool, set[int], set[int]]:
    """Beat for ``worker`` and renew its ``(id, token)`` jobs in hand.

    Returns (worker row still exists, ids still held, ids of those asked to cancel).
    """
    ids, tokens = (list(col) for col in zip(*sorted(jobs), strict=True)) if jobs else ([], [])
    cursor.execute(HEARTBEAT, {"worker": worker, "ids": ids, "tokens": tokens})
    alive, held, cancel_ids = cursor.fetchone()
    return bool(alive), set(held), set(cancel_ids)


def rescue(cursor: Any, *, lease: float, limit: int = 500) -> list[tuple]:
    """Rescue one bounded batch of jobs whose lease expired; returns (id, status, queue) rows."""
    cursor.execute(MARK_LOST_WORKERS, {"lease": lease})
    cursor.execute(RESCUE, {"lease": lease, "limit": limit, "channel": EVENTS_CHANNEL})
    return cursor.fetchall()


def report_progress(
    cursor: Any, *, job_id: int, token: int, percent: float | None, message: str | None
) -> bool | None:
    """Store progress; returns whether cancellation of the job was requested, or None when
    the attempt holding ``token`` no longer holds the job (nothing was stored)."""
    cursor.execute(
        PROGRESS,
        {
            "id": job_id,
            "token": token,
            "percent": percent,
            "message": message,
            "channel": EVENTS_CHANNEL,
        },
    )
    row = cursor.fetchone()
    return None if row is None else bool(row[0])
