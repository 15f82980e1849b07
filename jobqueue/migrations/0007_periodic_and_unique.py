"""Periodic jobs, unique jobs and paused queues.

- jobqueue_schedule: one row per declared schedule (jobqueue/periodic.py).
  last_tick is the newest tick enqueued; workers move it forward with a
  compare-and-set in the statement that inserts the tick's job, so each tick is
  enqueued exactly once. enabled is the admin's toggle.
- jobqueue_job.unique_key and unique_states (jobqueue/unique.py), and the partial
  unique index that enforces them: one job per key among the rows whose status
  is one of their own unique_states. Both columns are NULL for other jobs, which
  the index leaves out, so they cost other jobs nothing (adding NULL columns is
  a catalogue-only change). The index is built CONCURRENTLY, so that migrating a
  live queue does not block enqueues and claims while it is built.
- jobqueue_queuepause: one row per paused queue, read by the claim.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from jobqueue.migration_locks import with_lock_timeout


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('jobqueue', '0006_admin'),
    ]

    operations = [
        # The schedule's foreign key and the new columns lock jobqueue_job: bounded.
        *with_lock_timeout([
        migrations.CreateModel(
            name='Schedule',
            fields=[
                ('name', models.CharField(max_length=200, primary_key=True, serialize=False)),
                ('enabled', models.BooleanField(default=True)),
                ('last_tick', models.DateTimeField()),
                ('last_job', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.DB_SET_NULL, related_name='+', to='jobqueue.job')),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        ]),
        migrations.CreateModel(
            name='QueuePause',
            fields=[
                ('queue', models.CharField(max_length=100, primary_key=True, serialize=False)),
                ('paused_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('paused_by', models.CharField(blank=True, default='', max_length=150)),
            ],
            options={
                'ordering': ['queue'],
                'permissions': [('pause_queue', 'Can pause and resume queues')],
            },
        ),
        *with_lock_timeout([
        migrations.AddField(
            model_name='job',
            name='unique_key',
            field=models.TextField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='unique_states',
            field=models.JSONField(blank=True, editable=False, null=True),
        ),
        ]),
        migrations.RunSQL(
            "CREATE UNIQUE INDEX CONCURRENTLY jobqueue_job_unique ON jobqueue_job (unique_key) "
            "WHERE unique_key IS NOT NULL AND unique_states ? status",
            "DROP INDEX CONCURRENTLY jobqueue_job_unique",
        ),
    ]
