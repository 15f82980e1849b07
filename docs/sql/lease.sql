-- The statements of jobqueue/queries/lease.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- REGISTER_WORKER
INSERT INTO jobqueue_worker
    (hostname, pid, queues, concurrency, lease_seconds, started_at, last_heartbeat)
VALUES (%(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(lease)s, now(), now())
RETURNING id;

-- UNREGISTER_WORKER
DELETE FROM jobqueue_worker WHERE id = %(worker)s;

-- HEARTBEAT
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
       COALESCE((SELECT array_agg(id) FROM held WHERE cancel_requested), '{}') AS cancel_ids;

-- RESCUE
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
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM rescued) AS c
    GROUP BY chunk
)
SELECT id, status, queue FROM rescued WHERE (SELECT count(*) FROM announced) >= 0;

-- MARK_LOST_WORKERS
UPDATE jobqueue_worker SET lost_at = now()
WHERE lost_at IS NULL AND last_heartbeat < now() - make_interval(secs => %(lease)s)
  AND last_heartbeat < now() - make_interval(secs => COALESCE(lease_seconds, 0));

-- PROGRESS
WITH updated AS (
    UPDATE jobqueue_job
    SET progress_percent = COALESCE(%(percent)s, progress_percent),
        progress_message = COALESCE(%(message)s, progress_message),
        progress_updated_at = now()
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
    RETURNING cancel_requested
)
SELECT cancel_requested, pg_notify(%(channel)s, %(id)s::text) FROM updated;
