-- The statements of jobqueue/queries/control.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- CANCEL
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
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM changed) AS c
    GROUP BY chunk
)
SELECT COALESCE((SELECT array_agg(id) FROM changed), '{}'), (SELECT count(*) FROM announced);

-- RETRY
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
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM changed) AS c
    GROUP BY chunk
)
SELECT COALESCE((SELECT array_agg(id) FROM changed), '{}'), (SELECT count(*) FROM announced),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM changed) AS s);

-- PAUSE_QUEUE
INSERT INTO jobqueue_queuepause (queue, paused_at, paused_by) VALUES (%(queue)s, now(), %(by)s)
ON CONFLICT (queue) DO NOTHING
RETURNING queue;

-- RESUME_QUEUE
WITH resumed AS (DELETE FROM jobqueue_queuepause WHERE queue = %(queue)s RETURNING queue)
SELECT pg_notify(%(channel)s, queue) FROM resumed;
