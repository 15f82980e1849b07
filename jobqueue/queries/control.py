"""What staff and owners do to jobs and queues: cancel, retry, pause and resume."""

from collections.abc import Sequence
from typing import Any

from jobqueue.queries.channels import EVENTS_CHANNEL, QUEUE_CHANNEL, announce_ids
from jobqueue.queries.pauses import PAUSE_LOCK

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

# Retry: a failed or cancelled job goes back to the queue with a fresh attempt budget; its
# error and run history stay. A unique job goes back only while no other job holds its key
# (re-queuing it would make two live jobs of one key, which the unique index refuses, and
# the refusal would roll the whole statement back).
#
# Who holds a key is read from rows this statement has locked, never from its snapshot:
# ``locked`` takes, in id order, the jobs asked for and every row of their keys that is
# live or could be retried. Two retries of two rows of one key (two API calls, or an admin
# action beside one) thus queue on the same row locks; the second, once the first commits,
# re-reads the rows it waited for (FOR UPDATE returns their latest version) and sees the key
# taken, so it changes nothing (the API's 409) instead of failing on the index. Of several
# rows of one key asked for at once, only the newest goes back. A job whose own
# unique_states include its failed or cancelled status holds its key itself, and may still
# be retried: the guard looks at the other rows only.
#
# Left to the index: an enqueue of the key that commits after this statement's snapshot
# and before its update (a row this statement cannot see, so cannot lock); the update then
# raises a unique violation and changes nothing, which the callers report as a conflict.
RETRY = f"""
WITH locked AS (
    SELECT id, status, unique_key, unique_states FROM jobqueue_job
    WHERE id = ANY(%(ids)s)
       OR (unique_key IN (SELECT unique_key FROM jobqueue_job WHERE id = ANY(%(ids)s))
           AND (status IN ('failed', 'cancelled') OR unique_states ? status))
    ORDER BY id FOR UPDATE
), chosen AS (
    SELECT DISTINCT ON (unique_key, CASE WHEN unique_key IS NULL THEN id END) id
    FROM locked AS l
    WHERE id = ANY(%(ids)s) AND status IN ('failed', 'cancelled')
      AND NOT EXISTS (SELECT FROM locked AS o
                      WHERE o.unique_key = l.unique_key AND o.id <> l.id
                        AND o.unique_states ? o.status)
    ORDER BY unique_key, CASE WHEN unique_key IS NULL THEN id END, id DESC
), changed AS (
    UPDATE jobqueue_job AS j
    SET status = 'queued', attempts = 0, scheduled_at = now(), finished_at = NULL,
        started_at = NULL, cancel_requested = false, result = NULL, worker_id = NULL,
        lease_token = NULL,
        progress_percent = NULL, progress_message = '', progress_updated_at = NULL
    FROM chosen WHERE j.id = chosen.id  -- locked above: as chosen read it
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
# Pause: in one transaction, PAUSE_LOCK first (queries/pauses.py: it waits for the claims
# under way and holds back new ones until commit), then the row. Returns whether the
# queue was running until now.
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
