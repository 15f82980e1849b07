"""Each worker records the lease it keeps (its LEASE setting, in seconds) on its row.

Rescue and the marking of lost workers then wait out the lease of the worker that holds
a job, not the lease of the worker that looks: in a rolling deploy that shortens LEASE,
the new workers must not take the healthy jobs of the old ones. A nullable column without
a default: a catalogue-only change, under a lock timeout. Rows of workers started before
it hold NULL, and are judged by the looking worker's lease, as before.
"""

from django.db import migrations, models

from jobqueue.migration_locks import with_lock_timeout


class Migration(migrations.Migration):
    dependencies = [
        ('jobqueue', '0008_queue_limits'),
    ]

    operations = with_lock_timeout([
        migrations.AddField(
            model_name='worker',
            name='lease_seconds',
            field=models.FloatField(
                blank=True, null=True,
                help_text="The lease this worker keeps (its LEASE setting), in seconds.",
            ),
        ),
    ])
