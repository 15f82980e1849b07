"""Backlog samples for the health page's depth chart."""

from typing import Any

# At most once a minute: the NOT EXISTS is a one-time filter (a probe of the
# unique index), so a second call in the same minute reads no job. The counts
# walk the claim and lease partial indexes, i.e. the backlog only, never the
# history. GROUPING SETS adds the total over all queues (queue ""), which exists
# even when the backlog is empty.
RECORD_SAMPLE = """
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
ON CONFLICT (minute, queue) DO NOTHING
"""

# purge_jobs keeps the samples of the last two days (the chart shows one).
PRUNE_SAMPLES = """
DELETE FROM jobqueue_queuesample WHERE minute < now() - interval '2 days'
"""


def record_sample(cursor: Any) -> None:
    """Sample the backlog for this minute, unless it was already (one short statement)."""
    cursor.execute(RECORD_SAMPLE)
