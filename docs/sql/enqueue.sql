-- The statements of jobqueue/queries/enqueue.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- INSERT_JOB
INSERT INTO jobqueue_job (task, queue, priority, max_attempts, timeout_seconds, created_at,
                          scheduled_at, args, kwargs, owner_id, idempotency_key,
                          status, errors, progress_message, attempts, cancel_requested)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued', '[]', '', 0, false)
RETURNING id;

-- ALLOCATE_IDS
SELECT array_agg(nextval((SELECT pg_get_serial_sequence('jobqueue_job', 'id'))::regclass))
FROM generate_series(1, %(n)s);

-- COPY_JOBS
COPY jobqueue_job (id, args, kwargs, task, queue, priority, max_attempts, timeout_seconds,
                   created_at, scheduled_at, status, errors, progress_message, attempts,
                   cancel_requested)
FROM STDIN;

-- SET_CONCURRENCY_KEYS
UPDATE jobqueue_job AS j SET concurrency_key = k.key, concurrency_limit = %(limit)s
FROM unnest(%(ids)s::bigint[], %(keys)s::text[]) AS k(id, key)
WHERE j.id = k.id;

-- INSERT_UNIQUE_JOB
WITH inserted AS (
    INSERT INTO jobqueue_job (task, queue, priority, max_attempts, timeout_seconds, created_at,
                              scheduled_at, args, kwargs, owner_id, idempotency_key,
                              status, errors, progress_message, attempts, cancel_requested,
                              unique_key, unique_states)
    VALUES (%(task)s, %(queue)s, %(priority)s, %(max_attempts)s, %(timeout)s, %(created_at)s,
            %(scheduled_at)s, %(args)s, %(kwargs)s, %(owner)s, %(idempotency_key)s,
            'queued', '[]', '', 0, false, %(key)s, %(states)s)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND unique_states ? status DO NOTHING
    RETURNING id
)
SELECT id, false FROM inserted
UNION ALL
SELECT id, true FROM jobqueue_job
WHERE unique_key = %(key)s AND unique_states ? status AND NOT EXISTS (SELECT FROM inserted);

-- COPY_STAGED
COPY jobqueue_job_staging (id, args, kwargs, unique_key, task, queue, priority, max_attempts,
                           timeout_seconds, created_at, scheduled_at, status, errors,
                           progress_message, attempts, cancel_requested, unique_states)
FROM STDIN;

-- INSERT_STAGED
INSERT INTO jobqueue_job
SELECT * FROM jobqueue_job_staging WHERE id = ANY(%(ids)s) ORDER BY id
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND unique_states ? status DO NOTHING
RETURNING id;

-- LIVE_BY_KEY
SELECT unique_key, id FROM jobqueue_job WHERE unique_key = ANY(%(keys)s) AND unique_states ? status;
