-- The statements of jobqueue/queries/reads.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- QUEUE_STATS
WITH waiting AS (
    SELECT queue, count(*) AS queued,
           count(*) FILTER (WHERE scheduled_at <= now()) AS ready,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()) AS oldest_ready
    FROM jobqueue_job WHERE status = 'queued' GROUP BY queue
), active AS (
    SELECT queue, count(*) AS running FROM jobqueue_job WHERE status = 'running' GROUP BY queue
), recent AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE finished_at >= now() - interval '5 minutes') AS finished_5m,
           avg(extract(epoch FROM finished_at - started_at))
               FILTER (WHERE finished_at >= now() - interval '5 minutes') AS mean_5m,
           count(*) AS finished_60m,
           avg(extract(epoch FROM finished_at - started_at)) AS mean_60m
    FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at >= now() - interval '60 minutes'
    GROUP BY queue
)
SELECT queue,
       COALESCE(w.queued, 0), COALESCE(w.ready, 0),
       extract(epoch FROM now() - w.oldest_ready),
       COALESCE(a.running, 0),
       COALESCE(r.succeeded, 0), COALESCE(r.failed, 0), COALESCE(r.cancelled, 0),
       COALESCE(r.finished_5m, 0), r.mean_5m, COALESCE(r.finished_60m, 0), r.mean_60m
FROM waiting AS w FULL JOIN active AS a USING (queue) FULL JOIN recent AS r USING (queue)
ORDER BY queue;

-- TIMINGS
WITH newest AS (
    SELECT queue, task, status, scheduled_at, started_at, finished_at
    FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at >= now() - interval '60 minutes'
    ORDER BY finished_at DESC
    LIMIT %(sample)s
)
SELECT queue, task, count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status = 'failed'),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started_at - scheduled_at)),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM finished_at - started_at))
FROM newest
GROUP BY GROUPING SETS ((queue), (task))
ORDER BY queue, task;

-- QUEUE_POSITIONS
SELECT me.id, 
CASE WHEN me.status = 'queued' THEN
    (SELECT count(*) FROM jobqueue_job AS j
     WHERE j.status = 'queued' AND j.queue = me.queue AND j.scheduled_at <= now()
       AND (j.priority > me.priority
            OR (j.priority = me.priority
                AND (j.scheduled_at, j.id) < (me.scheduled_at, me.id)))) END,
CASE WHEN me.status = 'queued' THEN
    (SELECT avg(recent.seconds) FROM (
        SELECT extract(epoch FROM f.finished_at - f.started_at) AS seconds FROM jobqueue_job AS f
        WHERE f.status IN ('succeeded', 'failed', 'cancelled')
          AND f.finished_at >= now() - interval '60 minutes' AND f.queue = me.queue
        ORDER BY f.finished_at DESC LIMIT 100) AS recent) END,
CASE WHEN me.status = 'queued' THEN
    (SELECT COALESCE(sum(w.concurrency), 0) FROM jobqueue_worker AS w
     WHERE w.lost_at IS NULL AND (w.queues = '[]'::jsonb OR w.queues ? me.queue)) END,
CASE WHEN me.status = 'queued' THEN
    extract(epoch FROM greatest(me.scheduled_at - now(), interval '0')) END

FROM unnest(%(ids)s::bigint[]) AS ids(id) JOIN jobqueue_job AS me ON me.id = ids.id
WHERE me.status = 'queued';

-- SEARCH_IDS
WITH found AS MATERIALIZED (
    SELECT id FROM jobqueue_job
    WHERE (status IN ('succeeded', 'failed', 'cancelled') AND jobqueue_search_document(task, args, kwargs, errors) @@ plainto_tsquery('simple', %(text)s))
       OR (status = 'queued' AND jobqueue_search_document(task, args, kwargs, errors) @@ plainto_tsquery('simple', %(text)s))
       OR (status = 'running' AND jobqueue_search_document(task, args, kwargs, errors) @@ plainto_tsquery('simple', %(text)s))
)
SELECT id FROM found ORDER BY id DESC LIMIT %(limit)s;
