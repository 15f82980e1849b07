"""Indexes for the REST API's figures, so that they never scan finished history.

- jobqueue_job_line: the queued jobs of one queue in claim order. Counting
  the jobs ahead of a job (position_in_queue) and the backlog per queue
  (/api/queues/) are index-only scans of the backlog.
- jobqueue_job_recent: finished jobs by finish time, carrying queue, status
  and start time, so throughput and mean duration over the last hour are an
  index-only range scan however many older finished rows the table keeps.

Built CONCURRENTLY (the migration is not atomic) so that adding them to a
busy table never blocks workers. Raw SQL keeps them out of the model state:
INCLUDE columns and DESC keys in partial indexes are what the queries need.
"""

from django.db import migrations

FORWARD = [
    """
    CREATE INDEX CONCURRENTLY IF NOT EXISTS jobqueue_job_line
    ON jobqueue_job (queue, priority DESC, scheduled_at, id)
    WHERE status = 'queued'
    """,
    """
    CREATE INDEX CONCURRENTLY IF NOT EXISTS jobqueue_job_recent
    ON jobqueue_job (finished_at) INCLUDE (queue, status, started_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled')
    """,
]
BACKWARD = [
    "DROP INDEX CONCURRENTLY IF EXISTS jobqueue_job_line",
    "DROP INDEX CONCURRENTLY IF EXISTS jobqueue_job_recent",
]


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("jobqueue", "0002_notify_trigger_and_storage")]
    operations = [
        migrations.RunSQL(forward, backward)
        for forward, backward in zip(FORWARD, BACKWARD, strict=True)
    ]
