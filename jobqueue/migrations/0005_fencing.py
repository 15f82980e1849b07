"""Fencing: a token per attempt, and a per-attempt history of where each ran.

- lease_token: set from jobqueue_job_lease_seq by every claim and cleared by
  every write that ends an attempt; the worker's writes match it (see queries.py).
- runs: one JSON entry per attempt that ended. Its default lives in the database
  (db_default), because enqueue inserts rows with raw SQL and COPY.

Both columns are added without a table rewrite (a NULL column, and a constant
default, are catalogue-only changes since PostgreSQL 11).
"""

from django.db import migrations, models

from jobqueue.migration_locks import with_lock_timeout


class Migration(migrations.Migration):
    dependencies = [("jobqueue", "0004_lean_indexes")]
    operations = with_lock_timeout(
        [
            migrations.RunSQL(
                "CREATE SEQUENCE jobqueue_job_lease_seq AS bigint",
                "DROP SEQUENCE jobqueue_job_lease_seq",
            ),
            migrations.AddField(
                model_name="job",
                name="lease_token",
                field=models.BigIntegerField(blank=True, editable=False, null=True),
            ),
            migrations.AddField(
                model_name="job",
                name="runs",
                field=models.JSONField(blank=True, db_default=[], default=list, editable=False),
            ),
        ]
    )
