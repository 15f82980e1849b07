"""Fewer index writes per job: every row passes through three writes (insert, claim, ack).

- The foreign keys' default indexes covered every row. The worker index now
  holds only claimed rows, and the owner index only jobs submitted by a user;
  an index over all rows costs one more entry on each of a job's three writes.
- jobqueue_job_owner (owner, -id) over every row becomes jobqueue_job_owned,
  partial; the plain owner_id index it made redundant goes.
- jobqueue_job_purge (finished_at) and jobqueue_job_recent (finished_at)
  INCLUDE (...) of migration 0003 were two indexes on one key. Both give way
  to jobqueue_job_finished on (finished_at, id): purge_jobs's keyset order
  without a sort, and the API's figures for the last hour, index-only.

Built and dropped CONCURRENTLY (not atomic), so a busy table keeps working.
"""

import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

from jobqueue.migration_locks import with_lock_timeout

FINISHED = ["succeeded", "failed", "cancelled"]


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("jobqueue", "0003_api_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status__in", FINISHED)),
                fields=["finished_at", "id"],
                include=("queue", "status", "started_at"),
                name="jobqueue_job_finished",
            ),
        ),
        migrations.RunSQL(
            "DROP INDEX CONCURRENTLY IF EXISTS jobqueue_job_recent",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobqueue_job_recent "
            "ON jobqueue_job (finished_at) INCLUDE (queue, status, started_at) "
            "WHERE status IN ('succeeded', 'failed', 'cancelled')",
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("owner__isnull", False)),
                fields=["owner", "-id"],
                name="jobqueue_job_owned",
            ),
        ),
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("worker__isnull", False)),
                fields=["worker"],
                name="jobqueue_job_worker",
            ),
        ),
        RemoveIndexConcurrently(model_name="job", name="jobqueue_job_owner"),
        RemoveIndexConcurrently(model_name="job", name="jobqueue_job_purge"),
        # The foreign keys are re-created: ALTER TABLE, under the lock timeout.
        *with_lock_timeout(
            [
                migrations.AlterField(
                    model_name="job",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DB_SET_NULL,
                        related_name="jobs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="job",
                    name="worker",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DB_SET_NULL,
                        related_name="jobs",
                        to="jobqueue.worker",
                    ),
                ),
            ]
        ),
    ]
