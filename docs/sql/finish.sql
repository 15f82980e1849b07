-- The statements of jobqueue/queries/finish.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- ACK
WITH outcome AS (
    SELECT * FROM unnest(
        %(ids)s::bigint[], %(tokens)s::bigint[], %(statuses)s::text[], %(results)s::jsonb[],
        %(errors)s::jsonb[], %(delays)s::float8[], %(started)s::timestamptz[]
    ) AS o(id, token, status, result, error, delay, started_at)
), done AS (
    UPDATE jobqueue_job AS j
    SET status = CASE WHEN j.cancel_requested
                           AND o.status IN ('queued', 'failed', 'snoozed', 'late')
                      THEN 'cancelled' WHEN o.status IN ('snoozed', 'late') THEN 'queued'
                      ELSE o.status END,
        -- A snoozed attempt is refunded (as a give-back is): it ran, but did not fail.
        -- A late one (a rate-limited job that reached its child too late: never run)
        -- is refunded too, and leaves no run behind.
        attempts = CASE WHEN o.status IN ('snoozed', 'late') AND NOT j.cancel_requested
                        THEN GREATEST(j.attempts - 1, 0) ELSE j.attempts END,
        result = o.result,
        errors = CASE
            WHEN o.error IS NOT NULL THEN j.errors || o.error
            WHEN o.status IN ('snoozed', 'late') AND j.cancel_requested
            THEN j.errors || jsonb_build_array(
                jsonb_build_object('attempt', j.attempts, 'traceback', '', 'at', now(),
                                   'type', 'jobqueue.exceptions.JobCancelled',
                                   'message', CASE WHEN o.status = 'late'
                                                   THEN 'cancelled before it started'
                                                   ELSE 'cancelled while snoozed' END,
                                   'worker', %(worker_name)s::text))
            ELSE j.errors END,
        -- A retry's backoff and a snooze count from the database's clock, which the claim
        -- compares scheduled_at with, never from the worker host's.
        scheduled_at = CASE WHEN o.delay IS NULL THEN j.scheduled_at
                            ELSE now() + make_interval(secs => o.delay) END,
        finished_at = CASE WHEN o.status IN ('queued', 'snoozed', 'late') AND NOT j.cancel_requested
                           THEN NULL ELSE now() END,
        started_at = COALESCE(o.started_at, j.started_at),
        runs = CASE WHEN o.status = 'late' THEN j.runs ELSE j.runs || jsonb_build_array(
            jsonb_build_object(
                'attempt', j.attempts, 'worker_id', %(worker)s, 'worker', %(worker_name)s::text,
                'started_at', COALESCE(o.started_at, j.started_at), 'finished_at', now(),
                'outcome', CASE WHEN o.status = 'queued' THEN 'failed' ELSE o.status END))
            END,
        worker_id = NULL,
        heartbeat_at = NULL,
        lease_token = NULL
    FROM outcome AS o
    WHERE j.id = o.id AND j.lease_token = o.token AND j.status = 'running'
    RETURNING j.id
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM done) AS c
    GROUP BY chunk
)
SELECT COALESCE((SELECT array_agg(id) FROM done), '{}'), (SELECT count(*) FROM announced);

-- GIVE_BACK
WITH given AS (
    UPDATE jobqueue_job AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts
                        ELSE GREATEST(j.attempts - 1, 0) END,
        finished_at = CASE WHEN j.cancel_requested THEN now() END,
        errors = CASE WHEN j.cancel_requested THEN j.errors || jsonb_build_array(
            jsonb_build_object('attempt', j.attempts, 'type', 'jobqueue.exceptions.JobCancelled',
                               'message', %(cancelled)s::text,
                               'traceback', '', 'at', now(), 'worker', %(worker_name)s::text))
            ELSE j.errors END,
        worker_id = NULL, heartbeat_at = NULL, lease_token = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS g(id, token)
    WHERE j.id = g.id AND j.lease_token = g.token AND j.status = 'running'
    RETURNING j.id, j.status, j.queue
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM given) AS c
    GROUP BY chunk
)
SELECT COALESCE((SELECT array_agg(id) FROM given), '{}'), (SELECT count(*) FROM announced),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM given WHERE status = 'queued') AS s);

-- GIVE_BACK_UNKNOWN
WITH unknown AS (
    SELECT id FROM jobqueue_job
    WHERE worker_id = %(worker)s AND status = 'running' AND NOT (lease_token = ANY(%(known)s))
    ORDER BY id FOR UPDATE
), given AS (
    UPDATE jobqueue_job AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts
                        ELSE GREATEST(j.attempts - 1, 0) END,
        finished_at = CASE WHEN j.cancel_requested THEN now() END,
        errors = CASE WHEN j.cancel_requested THEN j.errors || jsonb_build_array(
            jsonb_build_object('attempt', j.attempts, 'type', 'jobqueue.exceptions.JobCancelled',
                               'message', %(cancelled)s::text,
                               'traceback', '', 'at', now(), 'worker', %(worker_name)s::text))
            ELSE j.errors END,
        worker_id = NULL, heartbeat_at = NULL, lease_token = NULL
    FROM unknown WHERE j.id = unknown.id
    RETURNING j.id, j.status, j.queue
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM given) AS c
    GROUP BY chunk
)
SELECT COALESCE((SELECT array_agg(id) FROM given), '{}'), (SELECT count(*) FROM announced),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM given WHERE status = 'queued') AS s);
