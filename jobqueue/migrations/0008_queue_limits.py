"""Global limits: per queue (jobqueue/limits.py) and per concurrency key (jobqueue/keys.py).

- jobqueue_queuelimit: one row per limited queue. The claim locks a limited
  queue's row before it counts the queue's running jobs and recent starts
  (queries.LOCK_LIMITS, queries.CLAIM). ``starts``, the rate limit's sliding log,
  is left out of the model: only that SQL reads and writes it, and an array
  column would need django.contrib.postgres in every project's INSTALLED_APPS.
- jobqueue_job.concurrency_key and concurrency_limit: NULL columns (a catalogue-only
  change, under a lock timeout), and two partial indexes over keyed jobs only, built
  CONCURRENTLY so that enqueues and claims go on meanwhile: the ready jobs of a key
  in claim order, and the running jobs of a key (for its count).
"""

from django.db import migrations, models

from jobqueue.migration_locks import with_lock_timeout


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('jobqueue', '0007_periodic_and_unique'),
    ]

    operations = [
        migrations.CreateModel(
            name='QueueLimit',
            fields=[
                ('queue', models.CharField(max_length=100, primary_key=True, serialize=False)),
                ('concurrency', models.PositiveIntegerField(blank=True, help_text="At most this many of the queue's jobs run at once.", null=True)),
                ('rate', models.PositiveIntegerField(blank=True, help_text="At most this many starts in any window of 'per' seconds.", null=True)),
                ('per', models.FloatField(blank=True, help_text="The rate's window, in seconds.", null=True)),
                ('source', models.CharField(choices=[('settings', 'settings'), ('admin', 'admin override')], default='admin', max_length=10)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['queue'],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('rate__isnull', True), ('per__isnull', True)), models.Q(('rate__gte', 1), ('per__gt', 0)), _connector='OR'), name='jobqueue_queuelimit_rate_has_window'), models.CheckConstraint(condition=models.Q(('concurrency__isnull', True), ('concurrency__gte', 1), _connector='OR'), name='jobqueue_queuelimit_concurrency_positive')],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE jobqueue_queuelimit ADD COLUMN starts timestamptz[] NOT NULL DEFAULT '{}'",
            "ALTER TABLE jobqueue_queuelimit DROP COLUMN starts",
        ),
        *with_lock_timeout([
            migrations.AddField(
                model_name='job',
                name='concurrency_key',
                field=models.TextField(blank=True, editable=False, null=True),
            ),
            migrations.AddField(
                model_name='job',
                name='concurrency_limit',
                field=models.PositiveIntegerField(blank=True, editable=False, null=True),
            ),
        ]),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobqueue_job_key_line ON jobqueue_job "
            "(concurrency_key, priority DESC, scheduled_at, id) "
            "WHERE status = 'queued' AND concurrency_key IS NOT NULL",
            "DROP INDEX CONCURRENTLY IF EXISTS jobqueue_job_key_line",
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobqueue_job_key_running ON jobqueue_job "
            "(concurrency_key) WHERE status = 'running' AND concurrency_key IS NOT NULL",
            "DROP INDEX CONCURRENTLY IF EXISTS jobqueue_job_key_running",
        ),
    ]
