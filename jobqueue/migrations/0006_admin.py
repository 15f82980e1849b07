"""The admin: its search index, and the per-minute backlog samples of the health page.

- jobqueue_queuesample: one row per queue and minute (plus the total, queue ""),
  written at most once a minute from the backlog's indexes (jobqueue/samples.py)
  and pruned by purge_jobs; the health page charts queue depth over time from it.

The search: the words of a job as staff see them, indexed for finished jobs.

- jobqueue_search_document(task, args, kwargs, errors): a tsvector of the task
  path (whole and in parts), each error's type (whole and in parts) and
  message, and the arguments' keys and values, read from the JSON (so a
  message with quotes is found by its words, not by its escaped JSON text,
  and the keys "type" and "message" themselves are not words). Arguments or
  messages over 64 KiB of JSON are left out of it.
  IMMUTABLE: it depends on its arguments only, so it can be indexed.
- jobqueue_job_search: a GIN index over it for finished jobs only. Every job
  enters it once, when it finishes (that UPDATE writes new index entries
  anyway); indexing queued jobs too would add a GIN insert to every enqueue and
  every claim. The backlog is searched through its own partial indexes.

Built CONCURRENTLY (the migration is not atomic) so that it never blocks workers.
The 'simple' configuration: no stemming and no stop words, as ids and names need.
"""

from django.db import migrations, models

# One SELECT of one expression, so that the planner inlines it (a FROM clause, or
# plpgsql, would cost a function call per row where the backlog is searched).
# Arguments and messages over 64 KiB of JSON are left out: a tsvector holds at most
# 1 MB, and a job whose words did not fit would fail the UPDATE that finishes it.
FUNCTION = """
CREATE OR REPLACE FUNCTION jobqueue_search_document(task text, args jsonb, kwargs jsonb,
                                                    errors jsonb)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT to_tsvector('simple', task || ' ' || translate(task, '._', '  ') || ' '
                   || jsonb_path_query_array(errors, 'strict $[*].type')::text || ' '
                   || translate(jsonb_path_query_array(errors, 'strict $[*].type')::text,
                                '._', '  '))
    || CASE WHEN octet_length(jsonb_path_query_array(errors, 'strict $[*].message')::text)
                 <= 65536
            THEN jsonb_to_tsvector('simple',
                                   jsonb_path_query_array(errors, 'strict $[*].message'),
                                   '["string"]')
            ELSE ''::tsvector END
    || CASE WHEN octet_length(args::text) + octet_length(kwargs::text) <= 65536
            THEN jsonb_to_tsvector('simple', args, '["string", "numeric", "key"]')
                 || jsonb_to_tsvector('simple', kwargs, '["string", "numeric", "key"]')
            ELSE ''::tsvector END
$$
"""

INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobqueue_job_search
ON jobqueue_job USING gin (jobqueue_search_document(task, args, kwargs, errors))
WHERE status IN ('succeeded', 'failed', 'cancelled')
"""


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("jobqueue", "0005_fencing")]
    operations = [
        migrations.CreateModel(
            name="QueueSample",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("minute", models.DateTimeField()),
                ("queue", models.CharField(max_length=100)),
                ("ready", models.PositiveIntegerField()),
                ("scheduled", models.PositiveIntegerField()),
                ("running", models.PositiveIntegerField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("minute", "queue"), name="jobqueue_sample_minute"
                    )
                ],
            },
        ),
        migrations.RunSQL(
            FUNCTION, "DROP FUNCTION jobqueue_search_document(text, jsonb, jsonb, jsonb)"
        ),
        migrations.RunSQL(INDEX, "DROP INDEX CONCURRENTLY IF EXISTS jobqueue_job_search"),
    ]
