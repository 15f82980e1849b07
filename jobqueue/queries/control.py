"""What staff and owners do to jobs and queues: cancel, retry, pause and resume."""

from collections.abc import Sequence
from typing import Any

from jobqueue.queries.channels import EVENTS_CHANNEL, QUEUE_CHANNEL, announce_ids

# Cancel: a queued job is cancelled at once, a running one is asked to stop.
# Rows are locked in id order first (so two multi-row cancels, or a cancel and
# a worker's sorted ack, cannot deadlock), then changed under the lock, so it
# is atomic against a claim or an ack: whichever commits first, the other
# re-reads the row. A claim that commits first makes this a request to stop;
# a cancel that commits first leaves the claim nothing to take.
CANCEL = f"""
WITH locked AS (
    SELECT id FROM jobqueue_job WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE
), changed AS (
    UPDATE jobqueue_job AS j
    SET cancel_requested = true,
        status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
        finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
        errors = CASE WHEN status = 'queued' THEN errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempts, 'type', 'jobqueue.exceptions.JobCancelled',
            'message', 'cancelled before it ran', 'traceback', '', 'at', now()))
            ELSE errors END
    FROM locked WHERE j.id = locked.id AND j.status IN ('queued', 'running')
    RETURNING j.id
), announced AS (
    {announce_ids("changed")}
)
SELECT COALESCE((SELECT array_agg(id) FROM changed), '{{}}'), (SELECT count(*) FROM announced)
"""

# Retry: a failed or cancelled job goes back to the queue with a fresh
# attempt budget; its error and run history stay. Rows are locked in id order.
# A unique job whose key another live job holds stays as it is (re-queuing it
# would make two live jobs of one key, which the unique index refuses).
RETRY = f"""
WITH locked AS (
    SELECT id FROM jobqueue_job WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE
), changed AS (
    UPDATE jobqueue_job AS j
    SET status = 'queued', attempts = 0, scheduled_at = now(), finished_at = NULL,
        started_at = NULL, cancel_requested = false, result = NULL, worker_id = NULL,
        lease_token = NULL,
        progress_percent = NULL, progress_message = '', progress_updated_at = NULL
    FROM locked WHERE j.id = locked.id AND j.status IN ('failed', 'cancelled')
      AND NOT EXISTS (SELECT FROM jobqueue_job AS o
                      WHERE o.unique_key = j.unique_key AND o.unique_states ? o.status)
    RETURNING j.id, j.queue
), announced AS (
    {announce_ids("changed")}
)
SELECT COALESCE((SELECT array_agg(id) FROM changed), '{{}}'), (SELECT count(*) FROM announced),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM changed) AS s)
"""


def cancel(cursor: Any, ids: Sequence[int]) -> list[int]:
    """Cancel queued jobs and ask running ones to stop; returns the ids that changed."""
    cursor.execute(CANCEL, {"ids": list(ids), "channel": EVENTS_CHANNEL})
    return list(cursor.fetchone()[0])


def retry(cursor: Any, ids: Sequence[int]) -> list[int]:
    """Re-queue failed or cancelled jobs with a fresh attempt budget; returns ids that changed."""
    cursor.execute(
        RETRY, {"ids": list(ids), "channel": EVENTS_CHANNEL, "queue_channel": QUEUE_CHANNEL}
    )
    return list(cursor.fetchone()[0])


# --- Paused queues (jobqueue/scheduling/pauses.py) -------------------------------------
# Pause: in one transaction, the table lock first (see the interleaving notes at
# the top: it waits for claims under way and holds back new ones until commit),
# then the row. Returns whether the queue was running until now.
PAUSE_LOCK = "LOCK TABLE jobqueue_queuepause IN ACCESS EXCLUSIVE MODE"
PAUSE_QUEUE = """
INSERT INTO jobqueue_queuepause (queue, paused_at, paused_by) VALUES (%(queue)s, now(), %(by)s)
ON CONFLICT (queue) DO NOTHING
RETURNING queue
"""
# Resume: the row goes, and the queue's workers are woken to claim at once.
RESUME_QUEUE = """
WITH resumed AS (DELETE FROM jobqueue_queuepause WHERE queue = %(queue)s RETURNING queue)
SELECT pg_notify(%(channel)s, queue) FROM resumed
"""


def pause_queue(cursor: Any, queue: str, by: str) -> bool:
    """Pause ``queue``; run it in a transaction of its own. Returns False if it was paused."""
    cursor.execute(PAUSE_LOCK)
    cursor.execute(PAUSE_QUEUE, {"queue": queue, "by": by})
    return cursor.fetchone() is not None


def resume_queue(cursor: Any, queue: str) -> bool:
    """Resume ``queue`` and wake its workers; returns False if it was not paused."""
    cursor.execute(RESUME_QUEUE, {"queue": queue, "channel": QUEUE_CHANNEL})
    return cursor.fetchone() is not None
