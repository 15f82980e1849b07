"""Read-only figures for the REST API and the admin: queue stats, timings, queue positions,
search."""

from collections.abc import Sequence
from typing import Any

# Each reads only queued and running rows (the backlog) and the jobs that
# finished in the last hour, through partial indexes (migration 0003), so its
# cost does not grow with the finished history kept in the table.

# Per queue: backlog, running, and what finished in the last 5 and 60 minutes.
QUEUE_STATS = """
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
ORDER BY queue
"""

# The health page's timings, per queue and per task, over the newest jobs that
# finished in the last hour (at most %(sample)s of them: a backward range scan of
# the jobqueue_job_finished index that stops there, so a busy hour costs no more
# than a quiet one): wait (due to start, which is enqueue to start unless the job
# was delayed or waited to retry) and run time percentiles, and outcomes.
TIMINGS = """
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
ORDER BY queue, task
"""


# For a job ``me``, while it is queued (NULLs otherwise): how many ready jobs
# of its queue are ahead of it in claim order, the mean run time of the last
# 100 jobs of its queue that finished within the hour, the concurrency of the
# live workers that serve the queue, and the seconds until it is due. The
# count walks the queue's part of the line index; the mean reads the newest
# finished jobs backwards and stops at 100, where a mean over the whole hour
# read every job finished in it (60 ms per poll with 300,000 of them). CASE
# keeps the subqueries from running at all for other statuses.
POSITION_FIGURES = """
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
"""

# The figures of the queued jobs among %(ids)s. The ids drive a primary key
# lookup each: a deep backlog is never scanned to find them.
QUEUE_POSITIONS = f"""
SELECT me.id, {POSITION_FIGURES}
FROM unnest(%(ids)s::bigint[]) AS ids(id) JOIN jobqueue_job AS me ON me.id = ids.id
WHERE me.status = 'queued'
"""

# One job and its figures in one statement (the API's GET /api/jobs/{id}/):
# {columns} are the job's columns, qualified with ``me.``; %(owner)s limits it
# to one owner's jobs, or is NULL for staff who see every job.
JOB_WITH_POSITION = f"""
SELECT {{columns}}, {POSITION_FIGURES}
FROM jobqueue_job AS me
WHERE me.id = %(id)s AND (%(owner)s::bigint IS NULL OR me.owner_id = %(owner)s::bigint)
"""

# The watched jobs among %(ids)s and their figures, in one statement: what the
# web process's event hub reads when their NOTIFYs arrive (jobqueue/api/hub.py).
# No owner check: each watcher was authorised for its job when it started.
JOBS_WITH_POSITIONS = f"""
SELECT {{columns}}, {POSITION_FIGURES}
FROM jobqueue_job AS me
WHERE me.id = ANY(%(ids)s::bigint[])
"""


def queue_stats(cursor: Any) -> list[tuple]:
    """One row per queue with a backlog, running jobs or jobs finished in the last hour."""
    cursor.execute(QUEUE_STATS)
    return cursor.fetchall()


def timings(cursor: Any, sample: int) -> list[tuple]:
    """``(queue, task, succeeded, failed, wait p50/p95/p99, run p50/p95/p99)`` rows, one
    per queue (task None) and one per task (queue None); see ``TIMINGS``."""
    cursor.execute(TIMINGS, {"sample": sample})
    return cursor.fetchall()


def queue_positions(cursor: Any, ids: Sequence[int]) -> dict[int, tuple]:
    """For each queued job of ``ids``: (ahead, mean seconds, capacity, seconds until due)."""
    if not ids:
        return {}
    cursor.execute(QUEUE_POSITIONS, {"ids": list(ids)})
    return {row[0]: row[1:] for row in cursor.fetchall()}


def job_with_position_sql(columns: str) -> str:
    """``JOB_WITH_POSITION`` for these job columns (``me."id", me."task", ...``)."""
    return JOB_WITH_POSITION.replace("{columns}", columns)


def jobs_with_positions_sql(columns: str) -> str:
    """``JOBS_WITH_POSITIONS`` for these job columns, as ``job_with_position_sql``."""
    return JOBS_WITH_POSITIONS.replace("{columns}", columns)


def job_with_position(
    cursor: Any, sql: str, job_id: int, owner_id: int | None
) -> tuple[tuple, tuple | None] | None:
    """The job's columns and, while it is queued, its figures (as ``queue_positions``).

    ``sql`` is ``job_with_position_sql(columns)``; None when there is no such
    job (among ``owner_id``'s, unless that is None).
    """
    cursor.execute(sql, {"id": job_id, "owner": owner_id})
    row = cursor.fetchone()
    if row is None:
        return None
    figures = tuple(row[-4:])
    return tuple(row[:-4]), (figures if figures[0] is not None else None)


# --- The admin's search ------------------------------------------------------
# The newest jobs whose words (task, error types and messages, argument keys and
# values: migration 0006's search document) include every word of the text.
# One arm per partial index (finished jobs through the GIN index, the backlog
# through the claim and lease indexes), so the planner ORs bitmap scans. The CTE
# is MATERIALIZED so that it runs that way: inlined under the changelist's
# ORDER BY id DESC LIMIT, the planner walked the primary key backwards and
# computed the document of every row it passed (6.8 s for a rare value on 1M rows).
_MATCHES = (
    "jobqueue_search_document(task, args, kwargs, errors) @@ plainto_tsquery('simple', %(text)s)"
)
SEARCH_IDS = f"""
WITH found AS MATERIALIZED (
    SELECT id FROM jobqueue_job
    WHERE (status IN ('succeeded', 'failed', 'cancelled') AND {_MATCHES})
       OR (status = 'queued' AND {_MATCHES})
       OR (status = 'running' AND {_MATCHES})
)
SELECT id FROM found ORDER BY id DESC LIMIT %(limit)s
"""


def search_ids(cursor: Any, text: str, limit: int) -> list[int]:
    """Ids of the newest ``limit`` jobs holding every word of ``text``; none if it has no
    words (``[``)."""
    cursor.execute(SEARCH_IDS, {"text": text, "limit": limit})
    return [row[0] for row in cursor.fetchall()]
