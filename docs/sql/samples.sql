-- The statements of jobqueue/queries/samples.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- RECORD_SAMPLE
INSERT INTO jobqueue_queuesample (minute, queue, ready, scheduled, running)
SELECT date_trunc('minute', now()), COALESCE(queue, ''),
       count(*) FILTER (WHERE status = 'queued' AND scheduled_at <= now()),
       count(*) FILTER (WHERE status = 'queued' AND scheduled_at > now()),
       count(*) FILTER (WHERE status = 'running')
FROM jobqueue_job
WHERE status IN ('queued', 'running')
  AND NOT EXISTS (SELECT 1 FROM jobqueue_queuesample
                  WHERE minute = date_trunc('minute', now()) AND queue = '')
GROUP BY GROUPING SETS ((queue), ())
HAVING NOT EXISTS (SELECT 1 FROM jobqueue_queuesample
                   WHERE minute = date_trunc('minute', now()) AND queue = '')
ON CONFLICT (minute, queue) DO NOTHING;

-- PRUNE_SAMPLES
DELETE FROM jobqueue_queuesample WHERE minute < now() - interval '2 days';
