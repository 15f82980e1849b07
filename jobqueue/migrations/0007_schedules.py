"""Periodic jobs: one row per declared schedule (jobqueue/periodic.py).

last_tick is the newest tick enqueued; workers move it forward with a
compare-and-set in the statement that inserts the tick's job, so each tick is
enqueued exactly once. enabled is the admin's toggle.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobqueue', '0005_fencing'),
    ]

    operations = [
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
    ]
