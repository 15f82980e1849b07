"""purge_jobs: bounded batches of finished jobs, and lost workers' rows."""

# purge_jobs: delete one bounded batch of finished jobs, oldest first. The
# keyset (finished_at, id) resumes where the last batch stopped, so no batch
# re-reads index entries of rows already deleted; SKIP LOCKED passes over a
# row someone holds (an admin retrying it) instead of waiting for it, and the
# literal status list lets the planner use the partial index jobqueue_job_finished.
PURGE_BATCH = """
WITH doomed AS (
    SELECT id FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)
      AND finished_at < %(before)s
      AND finished_at >= %(after_at)s AND (finished_at, id) > (%(after_at)s, %(after_id)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY finished_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobqueue_job AS j USING doomed WHERE j.id = doomed.id
RETURNING j.finished_at, j.id, j.status, j.queue
"""

# purge_jobs --dry-run: what a purge would delete, per status and queue.
PURGE_COUNT = """
SELECT status, queue, count(*) FROM jobqueue_job
WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)
  AND finished_at < %(before)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
GROUP BY status, queue ORDER BY status, queue
"""

# Workers flagged lost before the cutoff: their rows only feed the health page.
PURGE_LOST_WORKERS = "DELETE FROM jobqueue_worker WHERE lost_at < %(before)s"
COUNT_LOST_WORKERS = "SELECT count(*) FROM jobqueue_worker WHERE lost_at < %(before)s"

# The admin's purge action: delete the finished jobs among the selected ids,
# passing over any a worker or another admin holds.
PURGE_IDS = """
DELETE FROM jobqueue_job WHERE id IN (
    SELECT id FROM jobqueue_job
    WHERE id = ANY(%(ids)s) AND status IN ('succeeded', 'failed', 'cancelled')
    FOR UPDATE SKIP LOCKED
)
RETURNING id, task, status
"""
