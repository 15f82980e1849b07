-- The statements of jobqueue/queries/claims.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- CLAIM_PLAIN_ANY_QUEUE
WITH chosen AS (
    SELECT id FROM jobqueue_job
    WHERE status = 'queued' AND scheduled_at <= now() 
      AND queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
      AND concurrency_key IS NULL
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobqueue_job AS j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(),
        heartbeat_at = now(), worker_id = %(worker)s,
        lease_token = nextval('jobqueue_job_lease_seq')
    -- An id array, not a join: the planner then always looks rows up by primary
    -- key instead of hashing the whole table when it is mid-sized.
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    -- Arguments as JSON text: the child that runs the job parses them, and the
    -- supervisor knows their size without parsing them.
    RETURNING j.id, j.task, j.args::text, j.kwargs::text, j.attempts, j.max_attempts,
              j.timeout_seconds, j.priority, j.scheduled_at, j.queue, j.lease_token
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM claimed) AS c
    GROUP BY chunk
)
-- The condition makes the announcement run (a CTE nobody reads is skipped; a
-- join that adds no column would be removed) and is always true: the count
-- reads every chunk's row once, as an init plan, before the first row is returned.
SELECT claimed.* FROM claimed WHERE (SELECT count(*) FROM announced) >= 0;

-- CLAIM_PLAIN_QUEUES
WITH chosen AS (
    SELECT id FROM jobqueue_job
    WHERE status = 'queued' AND scheduled_at <= now() AND queue = ANY(%(queues)s)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
      AND concurrency_key IS NULL
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobqueue_job AS j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(),
        heartbeat_at = now(), worker_id = %(worker)s,
        lease_token = nextval('jobqueue_job_lease_seq')
    -- An id array, not a join: the planner then always looks rows up by primary
    -- key instead of hashing the whole table when it is mid-sized.
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    -- Arguments as JSON text: the child that runs the job parses them, and the
    -- supervisor knows their size without parsing them.
    RETURNING j.id, j.task, j.args::text, j.kwargs::text, j.attempts, j.max_attempts,
              j.timeout_seconds, j.priority, j.scheduled_at, j.queue, j.lease_token
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM claimed) AS c
    GROUP BY chunk
)
-- The condition makes the announcement run (a CTE nobody reads is skipped; a
-- join that adds no column would be removed) and is always true: the count
-- reads every chunk's row once, as an init plan, before the first row is returned.
SELECT claimed.* FROM claimed WHERE (SELECT count(*) FROM announced) >= 0;

-- CLAIM_ANY_QUEUE
WITH limited AS (
    SELECT l.queue, l.concurrency, l.rate, l.per, l.starts FROM jobqueue_queuelimit AS l
    WHERE l.queue = ANY(NULLIF(current_setting('jobqueue.limited', true), '')::text[])
), clock AS (
    SELECT clock_timestamp() AS t
), room AS (
    SELECT l.queue, LEAST(
        CASE WHEN l.rate IS NULL THEN %(free)s ELSE %(soon)s END,
        l.concurrency - (SELECT count(*) FROM jobqueue_job AS r
                         WHERE r.status = 'running' AND r.queue = l.queue),
        l.rate - (SELECT count(*) FROM unnest(l.starts) AS s
                  WHERE s >= (SELECT t FROM clock) - make_interval(secs => l.per + %(slack)s))
    ) AS n
    FROM limited AS l
), locked_keys AS (
    -- The keys LOCK_LIMITS locked, with their running jobs counted after the lock.
    SELECT k.key, (SELECT count(*) FROM jobqueue_job AS r
                   WHERE r.status = 'running' AND r.concurrency_key = k.key) AS running
    FROM unnest(NULLIF(current_setting('jobqueue.keys', true), '')::text[]) AS k(key)
), unlimited AS (
    SELECT id, queue, priority, scheduled_at, NULL::text AS concurrency_key,
           NULL::int AS concurrency_limit
    FROM jobqueue_job
    WHERE status = 'queued' AND scheduled_at <= now() 
      AND queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
      AND concurrency_key IS NULL
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
), within_limits AS (
    SELECT p.* FROM room CROSS JOIN LATERAL (
        SELECT id, queue, priority, scheduled_at, NULL::text AS concurrency_key,
               NULL::int AS concurrency_limit
        FROM jobqueue_job AS j
        WHERE j.status = 'queued' AND j.queue = room.queue AND j.scheduled_at <= now()
          AND j.concurrency_key IS NULL
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT %(soon)s
        FOR UPDATE SKIP LOCKED
    ) AS p
    WHERE room.n > 0
), keyed AS (
    -- A keyed job of a limited queue only while this claim holds that queue's row too.
    SELECT p.* FROM locked_keys AS k CROSS JOIN LATERAL (
        SELECT id, queue, priority, scheduled_at, concurrency_key, concurrency_limit
        FROM jobqueue_job AS j
        WHERE j.status = 'queued' AND j.concurrency_key = k.key AND j.scheduled_at <= now()
          
          AND j.queue NOT IN (SELECT queue FROM jobqueue_queuepause)
          AND (j.queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
               OR j.queue IN (SELECT queue FROM room))
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT %(free)s
        FOR UPDATE SKIP LOCKED
    ) AS p
), picked AS (
    SELECT * FROM unlimited UNION ALL SELECT * FROM within_limits UNION ALL SELECT * FROM keyed
), within_keys AS (
    -- Each key's first (limit - running) jobs in claim order.
    SELECT * FROM (
        SELECT p.*, k.running, row_number() OVER (
            PARTITION BY p.concurrency_key ORDER BY p.priority DESC, p.scheduled_at, p.id) AS rank
        FROM picked AS p LEFT JOIN locked_keys AS k ON k.key = p.concurrency_key
    ) AS ranked
    WHERE concurrency_key IS NULL OR rank <= concurrency_limit - running
), chosen AS (
    -- Each limited queue's first ``room`` jobs in claim order, then the best of all.
    SELECT id FROM (
        SELECT p.id, p.priority, p.scheduled_at, room.n, row_number() OVER (
            PARTITION BY p.queue ORDER BY p.priority DESC, p.scheduled_at, p.id) AS rank
        FROM within_keys AS p LEFT JOIN room ON room.queue = p.queue
    ) AS ranked
    WHERE n IS NULL OR rank <= n
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
), claimed AS (
    UPDATE jobqueue_job AS j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(),
        heartbeat_at = now(), worker_id = %(worker)s,
        lease_token = nextval('jobqueue_job_lease_seq')
    -- An id array, not a join: the planner then always looks rows up by primary
    -- key instead of hashing the whole table when it is mid-sized.
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    -- Arguments as JSON text: the child that runs the job parses them, and the
    -- supervisor knows their size without parsing them.
    RETURNING j.id, j.task, j.args::text, j.kwargs::text, j.attempts, j.max_attempts,
              j.timeout_seconds, j.priority, j.scheduled_at, j.queue, j.lease_token
), logged AS (
    UPDATE jobqueue_queuelimit AS l
    SET starts = ARRAY(SELECT s FROM unnest(l.starts) AS s
                       WHERE s >= c.t - make_interval(secs => l.per + %(slack)s))
                 || array_fill(c.t, ARRAY[n.started])
    FROM (SELECT queue, count(*)::int AS started FROM claimed GROUP BY queue) AS n, clock AS c
    WHERE l.queue = n.queue AND l.rate IS NOT NULL
      AND l.queue IN (SELECT queue FROM limited)
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM claimed) AS c
    GROUP BY chunk
)
-- The condition makes the announcement run (a CTE nobody reads is skipped; a
-- join that adds no column would be removed) and is always true: the count
-- reads every chunk's row once, as an init plan, before the first row is returned.
SELECT claimed.* FROM claimed WHERE (SELECT count(*) FROM announced) >= 0;

-- CLAIM_QUEUES
WITH limited AS (
    SELECT l.queue, l.concurrency, l.rate, l.per, l.starts FROM jobqueue_queuelimit AS l
    WHERE l.queue = ANY(NULLIF(current_setting('jobqueue.limited', true), '')::text[])
), clock AS (
    SELECT clock_timestamp() AS t
), room AS (
    SELECT l.queue, LEAST(
        CASE WHEN l.rate IS NULL THEN %(free)s ELSE %(soon)s END,
        l.concurrency - (SELECT count(*) FROM jobqueue_job AS r
                         WHERE r.status = 'running' AND r.queue = l.queue),
        l.rate - (SELECT count(*) FROM unnest(l.starts) AS s
                  WHERE s >= (SELECT t FROM clock) - make_interval(secs => l.per + %(slack)s))
    ) AS n
    FROM limited AS l
), locked_keys AS (
    -- The keys LOCK_LIMITS locked, with their running jobs counted after the lock.
    SELECT k.key, (SELECT count(*) FROM jobqueue_job AS r
                   WHERE r.status = 'running' AND r.concurrency_key = k.key) AS running
    FROM unnest(NULLIF(current_setting('jobqueue.keys', true), '')::text[]) AS k(key)
), unlimited AS (
    SELECT id, queue, priority, scheduled_at, NULL::text AS concurrency_key,
           NULL::int AS concurrency_limit
    FROM jobqueue_job
    WHERE status = 'queued' AND scheduled_at <= now() AND queue = ANY(%(queues)s)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
      AND concurrency_key IS NULL
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
), within_limits AS (
    SELECT p.* FROM room CROSS JOIN LATERAL (
        SELECT id, queue, priority, scheduled_at, NULL::text AS concurrency_key,
               NULL::int AS concurrency_limit
        FROM jobqueue_job AS j
        WHERE j.status = 'queued' AND j.queue = room.queue AND j.scheduled_at <= now()
          AND j.concurrency_key IS NULL
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT %(soon)s
        FOR UPDATE SKIP LOCKED
    ) AS p
    WHERE room.n > 0
), keyed AS (
    -- A keyed job of a limited queue only while this claim holds that queue's row too.
    SELECT p.* FROM locked_keys AS k CROSS JOIN LATERAL (
        SELECT id, queue, priority, scheduled_at, concurrency_key, concurrency_limit
        FROM jobqueue_job AS j
        WHERE j.status = 'queued' AND j.concurrency_key = k.key AND j.scheduled_at <= now()
          AND queue = ANY(%(queues)s)
          AND j.queue NOT IN (SELECT queue FROM jobqueue_queuepause)
          AND (j.queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
               OR j.queue IN (SELECT queue FROM room))
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT %(free)s
        FOR UPDATE SKIP LOCKED
    ) AS p
), picked AS (
    SELECT * FROM unlimited UNION ALL SELECT * FROM within_limits UNION ALL SELECT * FROM keyed
), within_keys AS (
    -- Each key's first (limit - running) jobs in claim order.
    SELECT * FROM (
        SELECT p.*, k.running, row_number() OVER (
            PARTITION BY p.concurrency_key ORDER BY p.priority DESC, p.scheduled_at, p.id) AS rank
        FROM picked AS p LEFT JOIN locked_keys AS k ON k.key = p.concurrency_key
    ) AS ranked
    WHERE concurrency_key IS NULL OR rank <= concurrency_limit - running
), chosen AS (
    -- Each limited queue's first ``room`` jobs in claim order, then the best of all.
    SELECT id FROM (
        SELECT p.id, p.priority, p.scheduled_at, room.n, row_number() OVER (
            PARTITION BY p.queue ORDER BY p.priority DESC, p.scheduled_at, p.id) AS rank
        FROM within_keys AS p LEFT JOIN room ON room.queue = p.queue
    ) AS ranked
    WHERE n IS NULL OR rank <= n
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
), claimed AS (
    UPDATE jobqueue_job AS j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(),
        heartbeat_at = now(), worker_id = %(worker)s,
        lease_token = nextval('jobqueue_job_lease_seq')
    -- An id array, not a join: the planner then always looks rows up by primary
    -- key instead of hashing the whole table when it is mid-sized.
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    -- Arguments as JSON text: the child that runs the job parses them, and the
    -- supervisor knows their size without parsing them.
    RETURNING j.id, j.task, j.args::text, j.kwargs::text, j.attempts, j.max_attempts,
              j.timeout_seconds, j.priority, j.scheduled_at, j.queue, j.lease_token
), logged AS (
    UPDATE jobqueue_queuelimit AS l
    SET starts = ARRAY(SELECT s FROM unnest(l.starts) AS s
                       WHERE s >= c.t - make_interval(secs => l.per + %(slack)s))
                 || array_fill(c.t, ARRAY[n.started])
    FROM (SELECT queue, count(*)::int AS started FROM claimed GROUP BY queue) AS n, clock AS c
    WHERE l.queue = n.queue AND l.rate IS NOT NULL
      AND l.queue IN (SELECT queue FROM limited)
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 400 AS chunk FROM claimed) AS c
    GROUP BY chunk
)
-- The condition makes the announcement run (a CTE nobody reads is skipped; a
-- join that adds no column would be removed) and is always true: the count
-- reads every chunk's row once, as an init plan, before the first row is returned.
SELECT claimed.* FROM claimed WHERE (SELECT count(*) FROM announced) >= 0;
