"""The SQL statements of the hot path and of staff actions, each named and described.

Everything here takes a DB-API cursor (a psycopg cursor in the worker, a Django cursor
elsewhere) and ``%(name)s`` parameters, so the worker can run without the ORM on its claim/ack
loop while web code shares the same SQL. One module per concern:

- ``channels``: the LISTEN/NOTIFY channels;
- ``limits`` and ``claims``: the claim, within global limits and concurrency keys;
- ``finish``: the ack and the give-back;
- ``lease``: worker registration, heartbeat, rescue, progress;
- ``control``: cancel, retry, pause, resume;
- ``pauses``: the lock a pause and the claims serialise on;
- ``enqueue``: inserts, COPY, unique jobs;
- ``periodic``, ``purge``, ``reads``, ``samples``: schedules, purge_jobs, the API's figures,
  the health page's samples.

The statements as they run are written out in docs/sql/ (``make sql``; tests/test_sql_files.py
fails while they differ). Callers use ``queries.NAME``: this package re-exports every public
name of its modules.

How the worker's statements fence each other off (who holds what, what commits when).

Every statement here runs in autocommit mode, one transaction each (the ack
and the claim share one, sent as a pipeline). A job row is the unit of
ownership: the worker that holds it is the one whose attempt carries the
row's current ``lease_token``. A claim draws a new token from a sequence;
rescue, give-back, an ack and retry clear it. So:
- Two claims cannot take the same row: each locks its picks FOR UPDATE SKIP
  LOCKED, and re-checks status = 'queued' under the lock (EvalPlanQual), so a
  row claimed and committed by another worker meanwhile is skipped, not waited on.
- A rescue and a claim, an ack or a heartbeat on the same row serialise on the
  row lock. Whichever commits second re-reads the row after the first commits,
  and its WHERE (status, lease_token) decides: a late ack, give-back, progress
  or heartbeat of an attempt whose job was rescued or re-claimed (same worker
  or another) matches no row and changes nothing; the worker learns from the
  ids returned that it lost the job.
- A pause (PAUSE_QUEUE) and a claim serialise on an advisory lock (``pauses``):
  every claim takes it shared before its statements read jobqueue_queuepause, the
  pause exclusive before it inserts its row, so it waits for every claim under way
  (which may have read the table without the pause) to commit, and a claim that
  starts meanwhile waits for the pause to commit and then takes its snapshots after
  it, so it sees the pause. Once the pause has committed, no claim takes a job of
  the queue. Nothing else takes that lock, so a dump or an idle transaction that
  read the pause table holds neither a pause nor any claim back.
- Multi-row writes lock rows in ascending id order (ids are sorted by the
  caller and joined in that order, or locked by an ORDER BY id FOR UPDATE), so
  two of them cannot deadlock on each other.
"""

from jobqueue.queries.channels import (
    EVENTS_CHANNEL,
    EVENTS_CHUNK,
    QUEUE_CHANNEL,
    notify_queues,
)
from jobqueue.queries.claims import (
    CLAIM,
    CLAIM_ANY_QUEUE,
    CLAIM_PLAIN_ANY_QUEUE,
    CLAIM_PLAIN_QUEUES,
    CLAIM_QUEUES,
    LOG_STARTS,
    READY_UNLIMITED,
    SELECTION_PLAIN,
    SELECTION_WITHIN_LIMITS,
    ClaimedJob,
    claim,
    claimed,
)
from jobqueue.queries.control import (
    CANCEL,
    PAUSE_QUEUE,
    RESUME_QUEUE,
    RETRY,
    cancel,
    pause_queue,
    resume_queue,
    retry,
)
from jobqueue.queries.enqueue import (
    ALLOCATE_IDS,
    COPY_CONSTANTS,
    COPY_JOBS,
    COPY_STAGED,
    INSERT_JOB,
    INSERT_STAGED,
    INSERT_UNIQUE_JOB,
    LIVE_BY_KEY,
    SET_CONCURRENCY_KEYS,
    STAGE_JOBS,
    UNIQUE_CONFLICT,
    UNIQUE_ROUNDS,
    UniqueRace,
    allocate_job_ids,
    copy_jobs,
    insert_job,
    insert_unique_job,
    move_staged_unique,
    set_concurrency_keys,
    stage_unique_jobs,
)
from jobqueue.queries.finish import (
    ACK,
    GIVE_BACK,
    GIVE_BACK_UNKNOWN,
    ack,
    acked,
    give_back,
    give_back_unknown,
)
from jobqueue.queries.lease import (
    HEARTBEAT,
    MARK_LOST_WORKERS,
    PROGRESS,
    REGISTER_WORKER,
    RESCUE,
    UNREGISTER_WORKER,
    heartbeat,
    register_worker,
    report_progress,
    rescue,
    unregister_worker,
)
from jobqueue.queries.limits import (
    KEY_WALK,
    LIMITS_PRESENT,
    LOCK_LIMITS,
    LOCK_LIMITS_ANY_QUEUE,
    LOCK_LIMITS_QUEUES,
    PROBE_LIMITS_ANY_QUEUE,
    PROBE_LIMITS_QUEUES,
    SYNC_LIMITS,
    LimitsLocked,
    limits_locked,
    limits_present,
    sync_limits,
)
from jobqueue.queries.pauses import PAUSE_GUARD, PAUSE_LOCK
from jobqueue.queries.periodic import (
    ENQUEUE_TICKS,
    ENSURE_SCHEDULES,
    SCHEDULE_STATES,
    enqueue_ticks,
    ensure_schedules,
    schedule_states,
)
from jobqueue.queries.purge import (
    COUNT_LOST_WORKERS,
    PURGE_BATCH,
    PURGE_COUNT,
    PURGE_IDS,
    PURGE_LOST_WORKERS,
)
from jobqueue.queries.reads import (
    JOB_WITH_POSITION,
    JOBS_WITH_POSITIONS,
    POSITION_FIGURES,
    QUEUE_POSITIONS,
    QUEUE_STATS,
    SEARCH_IDS,
    TIMINGS,
    job_with_position,
    job_with_position_sql,
    jobs_with_positions_sql,
    queue_positions,
    queue_stats,
    search_ids,
    timings,
)
from jobqueue.queries.samples import (
    PRUNE_SAMPLES,
    RECORD_SAMPLE,
    record_sample,
)

__all__ = [
    "ACK",
    "ALLOCATE_IDS",
    "CANCEL",
    "CLAIM",
    "CLAIM_ANY_QUEUE",
    "CLAIM_PLAIN_ANY_QUEUE",
    "CLAIM_PLAIN_QUEUES",
    "CLAIM_QUEUES",
    "COPY_CONSTANTS",
    "COPY_JOBS",
    "COPY_STAGED",
    "COUNT_LOST_WORKERS",
    "ENQUEUE_TICKS",
    "ENSURE_SCHEDULES",
    "EVENTS_CHANNEL",
    "EVENTS_CHUNK",
    "GIVE_BACK",
    "GIVE_BACK_UNKNOWN",
    "HEARTBEAT",
    "INSERT_JOB",
    "INSERT_STAGED",
    "INSERT_UNIQUE_JOB",
    "JOBS_WITH_POSITIONS",
    "JOB_WITH_POSITION",
    "KEY_WALK",
    "LIMITS_PRESENT",
    "LIVE_BY_KEY",
    "LOCK_LIMITS",
    "LOCK_LIMITS_ANY_QUEUE",
    "LOCK_LIMITS_QUEUES",
    "LOG_STARTS",
    "MARK_LOST_WORKERS",
    "PAUSE_GUARD",
    "PAUSE_LOCK",
    "PAUSE_QUEUE",
    "POSITION_FIGURES",
    "PROBE_LIMITS_ANY_QUEUE",
    "PROBE_LIMITS_QUEUES",
    "PROGRESS",
    "PRUNE_SAMPLES",
    "PURGE_BATCH",
    "PURGE_COUNT",
    "PURGE_IDS",
    "PURGE_LOST_WORKERS",
    "QUEUE_CHANNEL",
    "QUEUE_POSITIONS",
    "QUEUE_STATS",
    "READY_UNLIMITED",
    "RECORD_SAMPLE",
    "REGISTER_WORKER",
    "RESCUE",
    "RESUME_QUEUE",
    "RETRY",
    "SCHEDULE_STATES",
    "SEARCH_IDS",
    "SELECTION_PLAIN",
    "SELECTION_WITHIN_LIMITS",
    "SET_CONCURRENCY_KEYS",
    "STAGE_JOBS",
    "SYNC_LIMITS",
    "TIMINGS",
    "UNIQUE_CONFLICT",
    "UNIQUE_ROUNDS",
    "UNREGISTER_WORKER",
    "ClaimedJob",
    "LimitsLocked",
    "UniqueRace",
    "ack",
    "acked",
    "allocate_job_ids",
    "cancel",
    "claim",
    "claimed",
    "copy_jobs",
    "enqueue_ticks",
    "ensure_schedules",
    "give_back",
    "give_back_unknown",
    "heartbeat",
    "insert_job",
    "insert_unique_job",
    "job_with_position",
    "job_with_position_sql",
    "jobs_with_positions_sql",
    "limits_locked",
    "limits_present",
    "move_staged_unique",
    "notify_queues",
    "pause_queue",
    "queue_positions",
    "queue_stats",
    "record_sample",
    "register_worker",
    "report_progress",
    "rescue",
    "resume_queue",
    "retry",
    "schedule_states",
    "search_ids",
    "set_concurrency_keys",
    "stage_unique_jobs",
    "sync_limits",
    "timings",
    "unregister_worker",
]
