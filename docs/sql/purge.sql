-- The statements of jobqueue/queries/purge.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- PURGE_BATCH
WITH doomed AS (
    SELECT id FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)
      AND finished_at < %(before)s
      AND finished_at >= %(after_at)s AND (finished_at, id) > (%(after_at)s, %(after_id)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY finished_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobqueue_job AS j USING doomed WHERE j.id = doomed.id
RETURNING j.finished_at, j.id, j.status, j.queue;

-- PURGE_COUNT
SELECT status, queue, count(*) FROM jobqueue_job
WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)
  AND finished_at < %(before)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
GROUP BY status, queue ORDER BY status, queue;

-- PURGE_LOST_WORKERS
DELETE FROM jobqueue_worker WHERE lost_at < %(before)s;

-- COUNT_LOST_WORKERS
SELECT count(*) FROM jobqueue_worker WHERE lost_at < %(before)s;

-- PURGE_IDS
DELETE FROM jobqueue_job WHERE id IN (
    SELECT id FROM jobqueue_job
    WHERE id = ANY(%(ids)s) AND status IN ('succeeded', 'failed', 'cancelled')
    FOR UPDATE SKIP LOCKED
)
RETURNING id, task, status;
