-- The statements of jobqueue/queries/pauses.py, as they are sent.
-- Written by scripts/write_sql.py (make sql): edit the module, not this file.

-- PAUSE_GUARD
SELECT pg_advisory_xact_lock_shared('jobqueue_queuepause'::regclass::oid::int, 0);

-- PAUSE_LOCK
SELECT pg_advisory_xact_lock('jobqueue_queuepause'::regclass::oid::int, 0);
