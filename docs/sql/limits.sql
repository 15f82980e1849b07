-- The statements of jobqueue/queries/limits.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- PROBE_LIMITS_ANY_QUEUE
SELECT (EXISTS (SELECT FROM jobqueue_queuelimit AS l WHERE true )
        OR EXISTS (SELECT FROM jobqueue_job
                   WHERE status = 'queued' AND concurrency_key IS NOT NULL));

-- PROBE_LIMITS_QUEUES
SELECT (EXISTS (SELECT FROM jobqueue_queuelimit AS l WHERE true AND l.queue = ANY(%(queues)s))
        OR EXISTS (SELECT FROM jobqueue_job
                   WHERE status = 'queued' AND concurrency_key IS NOT NULL));

-- LOCK_LIMITS_ANY_QUEUE
WITH queues AS (
    SELECT l.queue, l.rate, l.per,
           (SELECT min(s) FROM unnest(l.starts) AS s
            WHERE s >= clock_timestamp() - make_interval(secs => l.per + %(slack)s)) AS oldest
    FROM jobqueue_queuelimit AS l
    WHERE %(soon)s > 0 
      AND l.queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND EXISTS (SELECT FROM jobqueue_job AS j
                  WHERE j.status = 'queued' AND j.queue = l.queue AND j.scheduled_at <= now())
    ORDER BY l.queue
    FOR UPDATE OF l
), after_cursor(k, n) AS MATERIALIZED (
    WITH RECURSIVE walk(k, n) AS (
        (SELECT concurrency_key, 1 FROM jobqueue_job
         WHERE status = 'queued' AND concurrency_key > %(after)s AND %(free)s > 0
         ORDER BY concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobqueue_job
                WHERE status = 'queued' AND concurrency_key > walk.k
                ORDER BY concurrency_key LIMIT 1), walk.n + 1
        FROM walk WHERE walk.k IS NOT NULL AND walk.n < %(walk)s
    )
    SELECT k, n FROM walk WHERE k IS NOT NULL
), from_start(k, n) AS MATERIALIZED (
    WITH RECURSIVE walk(k, n) AS (
        (SELECT concurrency_key, (SELECT count(*) FROM after_cursor) + 1 FROM jobqueue_job
         WHERE status = 'queued' AND concurrency_key IS NOT NULL
           AND concurrency_key <= %(after)s AND %(free)s > 0
           AND (SELECT count(*) FROM after_cursor) < %(walk)s
         ORDER BY concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobqueue_job
                WHERE status = 'queued' AND concurrency_key > walk.k
                  AND concurrency_key <= %(after)s
                ORDER BY concurrency_key LIMIT 1), walk.n + 1
        FROM walk WHERE walk.k IS NOT NULL AND walk.n < %(walk)s
    )
    SELECT k, n FROM walk WHERE k IS NOT NULL
), walked AS (
    SELECT k, n FROM after_cursor UNION ALL SELECT k, n FROM from_start
), eligible AS (
    SELECT w.k, w.n FROM walked AS w
    WHERE EXISTS (SELECT FROM jobqueue_job AS j
                  WHERE j.status = 'queued' AND j.concurrency_key = w.k
                    AND j.scheduled_at <= now() 
                    AND j.queue NOT IN (SELECT queue FROM jobqueue_queuepause))
      AND (SELECT count(*) FROM jobqueue_job AS r
           WHERE r.status = 'running' AND r.concurrency_key = w.k)
          < (SELECT j.concurrency_limit FROM jobqueue_job AS j
             WHERE j.status = 'queued' AND j.concurrency_key = w.k
             ORDER BY j.priority DESC, j.scheduled_at, j.id LIMIT 1)
    ORDER BY w.n
    LIMIT %(free)s
), keys AS (
    SELECT k, n, pg_advisory_xact_lock(hashtext('jobqueue.concurrency_key'), hashtext(k))
    FROM (SELECT k, n FROM eligible
          WHERE (SELECT count(*) FROM queues) >= 0  -- the queues' row locks first
          ORDER BY hashtext(k), k OFFSET 0) AS ordered
)
SELECT set_config('jobqueue.limited', COALESCE((SELECT array_agg(queue)::text FROM queues), ''),
                  true),
       COALESCE((SELECT array_agg(queue) FROM queues WHERE rate IS NOT NULL), '{}'),
       (SELECT min(extract(epoch FROM COALESCE(oldest, clock_timestamp()) - clock_timestamp())
                   + per + %(slack)s) FROM queues WHERE rate IS NOT NULL),
       set_config('jobqueue.keys', COALESCE((SELECT array_agg(k)::text FROM keys), ''), true),
       COALESCE((SELECT k FROM keys ORDER BY n DESC LIMIT 1),
                (SELECT k FROM walked ORDER BY n DESC LIMIT 1)),
       (EXISTS (SELECT FROM jobqueue_queuelimit AS l WHERE true )
        OR EXISTS (SELECT FROM jobqueue_job
                   WHERE status = 'queued' AND concurrency_key IS NOT NULL));

-- LOCK_LIMITS_QUEUES
WITH queues AS (
    SELECT l.queue, l.rate, l.per,
           (SELECT min(s) FROM unnest(l.starts) AS s
            WHERE s >= clock_timestamp() - make_interval(secs => l.per + %(slack)s)) AS oldest
    FROM jobqueue_queuelimit AS l
    WHERE %(soon)s > 0 AND l.queue = ANY(%(queues)s)
      AND l.queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND EXISTS (SELECT FROM jobqueue_job AS j
                  WHERE j.status = 'queued' AND j.queue = l.queue AND j.scheduled_at <= now())
    ORDER BY l.queue
    FOR UPDATE OF l
), after_cursor(k, n) AS MATERIALIZED (
    WITH RECURSIVE walk(k, n) AS (
        (SELECT concurrency_key, 1 FROM jobqueue_job
         WHERE status = 'queued' AND concurrency_key > %(after)s AND %(free)s > 0
         ORDER BY concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobqueue_job
                WHERE status = 'queued' AND concurrency_key > walk.k
                ORDER BY concurrency_key LIMIT 1), walk.n + 1
        FROM walk WHERE walk.k IS NOT NULL AND walk.n < %(walk)s
    )
    SELECT k, n FROM walk WHERE k IS NOT NULL
), from_start(k, n) AS MATERIALIZED (
    WITH RECURSIVE walk(k, n) AS (
        (SELECT concurrency_key, (SELECT count(*) FROM after_cursor) + 1 FROM jobqueue_job
         WHERE status = 'queued' AND concurrency_key IS NOT NULL
           AND concurrency_key <= %(after)s AND %(free)s > 0
           AND (SELECT count(*) FROM after_cursor) < %(walk)s
         ORDER BY concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobqueue_job
                WHERE status = 'queued' AND concurrency_key > walk.k
                  AND concurrency_key <= %(after)s
                ORDER BY concurrency_key LIMIT 1), walk.n + 1
        FROM walk WHERE walk.k IS NOT NULL AND walk.n < %(walk)s
    )
    SELECT k, n FROM walk WHERE k IS NOT NULL
), walked AS (
    SELECT k, n FROM after_cursor UNION ALL SELECT k, n FROM from_start
), eligible AS (
    SELECT w.k, w.n FROM walked AS w
    WHERE EXISTS (SELECT FROM jobqueue_job AS j
                  WHERE j.status = 'queued' AND j.concurrency_key = w.k
                    AND j.scheduled_at <= now() AND j.queue = ANY(%(queues)s)
                    AND j.queue NOT IN (SELECT queue FROM jobqueue_queuepause))
      AND (SELECT count(*) FROM jobqueue_job AS r
           WHERE r.status = 'running' AND r.concurrency_key = w.k)
          < (SELECT j.concurrency_limit FROM jobqueue_job AS j
             WHERE j.status = 'queued' AND j.concurrency_key = w.k
             ORDER BY j.priority DESC, j.scheduled_at, j.id LIMIT 1)
    ORDER BY w.n
    LIMIT %(free)s
), keys AS (
    SELECT k, n, pg_advisory_xact_lock(hashtext('jobqueue.concurrency_key'), hashtext(k))
    FROM (SELECT k, n FROM eligible
          WHERE (SELECT count(*) FROM queues) >= 0  -- the queues' row locks first
          ORDER BY hashtext(k), k OFFSET 0) AS ordered
)
SELECT set_config('jobqueue.limited', COALESCE((SELECT array_agg(queue)::text FROM queues), ''),
                  true),
       COALESCE((SELECT array_agg(queue) FROM queues WHERE rate IS NOT NULL), '{}'),
       (SELECT min(extract(epoch FROM COALESCE(oldest, clock_timestamp()) - clock_timestamp())
                   + per + %(slack)s) FROM queues WHERE rate IS NOT NULL),
       set_config('jobqueue.keys', COALESCE((SELECT array_agg(k)::text FROM keys), ''), true),
       COALESCE((SELECT k FROM keys ORDER BY n DESC LIMIT 1),
                (SELECT k FROM walked ORDER BY n DESC LIMIT 1)),
       (EXISTS (SELECT FROM jobqueue_queuelimit AS l WHERE true AND l.queue = ANY(%(queues)s))
        OR EXISTS (SELECT FROM jobqueue_job
                   WHERE status = 'queued' AND concurrency_key IS NOT NULL));

-- SYNC_LIMITS
WITH wanted AS (
    SELECT * FROM unnest(%(queues)s::text[], %(concurrency)s::int[], %(rate)s::int[],
                         %(per)s::float8[]) AS w(queue, concurrency, rate, per)
), gone AS (
    DELETE FROM jobqueue_queuelimit AS l
    WHERE l.source = 'settings' AND l.queue NOT IN (SELECT queue FROM wanted)
)
INSERT INTO jobqueue_queuelimit AS l (queue, concurrency, rate, per, source, starts, updated_at)
SELECT queue, concurrency, rate, per, 'settings', '{}', now() FROM wanted
ON CONFLICT (queue) DO UPDATE
SET concurrency = EXCLUDED.concurrency, rate = EXCLUDED.rate, per = EXCLUDED.per,
    updated_at = now()
WHERE l.source = 'settings'
  AND (l.concurrency, l.rate, l.per) IS DISTINCT FROM (EXCLUDED.concurrency, EXCLUDED.rate,
                                                       EXCLUDED.per);
