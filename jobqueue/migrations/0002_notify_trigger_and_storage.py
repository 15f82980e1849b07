"""Wake workers on insert, and tune the job table for a queue's churn.

- A statement-level trigger sends one NOTIFY per queue per inserting
  statement, so every insert path (backend, bulk enqueue, COPY, admin)
  wakes the workers, and a bulk insert of 20,000 jobs sends one, not 20,000.
  NOTIFY is transactional: workers hear of a job only once it has committed.
- fillfactor leaves room in each page so that status changes can be HOT
  updates; aggressive autovacuum keeps dead tuples from piling up under
  constant claim/ack churn.
"""

from django.db import migrations

from jobqueue.migration_locks import with_lock_timeout

FORWARD = """
CREATE FUNCTION jobqueue_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobqueue', q.queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE status = 'queued') AS q;
    RETURN NULL;
END;
$$;
CREATE TRIGGER jobqueue_job_notify_inserted
    AFTER INSERT ON jobqueue_job
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION jobqueue_notify_inserted();
ALTER TABLE jobqueue_job SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE jobqueue_worker SET (fillfactor = 50);
"""

BACKWARD = """
DROP TRIGGER jobqueue_job_notify_inserted ON jobqueue_job;
DROP FUNCTION jobqueue_notify_inserted();
ALTER TABLE jobqueue_job RESET (fillfactor, autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor);
ALTER TABLE jobqueue_worker RESET (fillfactor);
"""


class Migration(migrations.Migration):
    dependencies = [("jobqueue", "0001_initial")]
    operations = with_lock_timeout([migrations.RunSQL(FORWARD, BACKWARD)])
