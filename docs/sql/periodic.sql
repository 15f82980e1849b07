-- The statements of jobqueue/queries/periodic.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- ENSURE_SCHEDULES
INSERT INTO jobqueue_schedule (name, enabled, last_tick)
SELECT name, true, now() FROM unnest(%(names)s::text[]) AS n(name)
ON CONFLICT (name) DO NOTHING;

-- SCHEDULE_STATES
SELECT now(), s.name, s.last_tick
FROM (SELECT 1) AS one LEFT JOIN jobqueue_schedule AS s ON s.name = ANY(%(names)s);

-- ENQUEUE_TICKS
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
RETURNING id;
