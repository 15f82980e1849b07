"""The few SQL statements on the hot path, each named and described.

Everything here takes a DB-API cursor (a psycopg cursor in the worker, a
Django cursor elsewhere) and ``%(name)s`` parameters, so the worker can run
without the ORM on its claim/ack loop while web code shares the same SQL.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobqueue.scheduling.limits import START_SLACK

# Channel on which inserts of queued jobs are announced (payload: queue name).
# Sent by a statement-level trigger (see migration 0002) so that every insert
# path (backend, bulk enqueue, COPY, admin) wakes the workers.
QUEUE_CHANNEL = "jobqueue"
# Channel on which job changes are announced (payload: comma-separated ids),
# for anyone waiting on a job (the API's long-poll).
EVENTS_CHANNEL = "jobqueue_events"
# Largest number of ids in one events payload (NOTIFY payloads stop at 8000 bytes).
EVENTS_CHUNK = 400

# How the worker's statements fence each other off (who holds what, what commits when).
#
# Every statement below runs in autocommit mode, one transaction each (the ack
# and the claim share one, sent as a pipeline). A job row is the unit of
# ownership: the worker that holds it is the one whose attempt carries the
# row's current ``lease_token``. A claim draws a new token from a sequence;
# rescue, give-back, an ack and retry clear it. So:
# - Two claims cannot take the same row: each locks its picks FOR UPDATE SKIP
#   LOCKED, and re-checks status = 'queued' under the lock (EvalPlanQual), so a
#   row claimed and committed by another worker meanwhile is skipped, not waited on.
# - A rescue and a claim, an ack or a heartbeat on the same row serialise on the
#   row lock. Whichever commits second re-reads the row after the first commits,
#   and its WHERE (status, lease_token) decides: a late ack, give-back, progress
#   or heartbeat of an attempt whose job was rescued or re-claimed (same worker
#   or another) matches no row and changes nothing; the worker learns from the
#   ids returned that it lost the job.
# - A pause (PAUSE_QUEUE) and a claim serialise on the table lock of
#   jobqueue_queuepause: the claim reads that table under ACCESS SHARE, held to
#   its commit; the pause takes ACCESS EXCLUSIVE before it inserts its row, so it
#   waits for every claim under way (which may have read the table without the
#   pause) to commit, and a claim that starts meanwhile waits for the pause to
#   commit and then takes its snapshot after it (PostgreSQL takes a statement's
#   snapshot once its locks are held), so it sees the pause. Once the pause has
#   committed, no claim takes a job of the queue.
# - Multi-row writes lock rows in ascending id order (ids are sorted by the
#   caller and joined in that order, or locked by an ORDER BY id FOR UPDATE), so
#   two of them cannot deadlock on each other.

# Global limits (jobqueue/scheduling/limits.py), enforced by the claim. Who holds what:
# - LOCK_LIMITS runs first in the claim's transaction (the same pipeline, so the
#   same round trip) and locks, FOR UPDATE in queue order, the jobqueue_queuelimit
#   rows of the limited queues this worker serves that have a ready job (a probe
#   of the per-queue index), unless it can start none now or the queue is paused.
#   A job that becomes ready after its snapshot waits for the next claim.
#   Claims of a limited queue thus run one at a time, in every worker on every
#   host; sorted locking means two claims cannot deadlock.
#   It records the queues it locked in a transaction-local setting
#   (jobqueue.limited), which CLAIM reads: CLAIM takes jobs of a limited queue
#   only when this transaction holds its row.
# - CLAIM is the next statement, so under READ COMMITTED it takes a new snapshot,
#   after the lock was granted: it sees every claim and ack of that queue that
#   committed before (they released the row lock by committing), and none can
#   commit meanwhile. Its counts are exact: running jobs of the queue (claimed,
#   started or not, and not yet acked, rescued or given back) for concurrency,
#   and the sliding log of claim times in the row for rate.
# - The log is written by the same statement that claims (the ``logged`` CTE),
#   with clock_timestamp() read after the lock: later claims of the queue read
#   later times, so the log is in commit order and windows are counted exactly.
#   A claim at t counts the starts at or after t - (per + slack), both ends of
#   the window included, so no closed window of that length ever holds more
#   than the rate (jobqueue/scheduling/limits.py derives the bound on real starts).
# - A running job whose worker froze still counts until it is rescued; by then
#   its children have stopped (self-fencing), so the limit holds on real runs too.
# - An admin who changes a limit updates the row under the same row lock: claims
#   after its commit obey the new limit; running jobs are never stopped by it.
# ``free`` is how many jobs the worker can start at once now: jobs of a queue
# with a concurrency limit are never claimed ahead into a buffer, where they
# would hold a slot of the limit idle. ``soon`` (>= free) is how many it expects
# to start within half of START_SLACK: jobs of a rate-limited queue are claimed
# up to that (a job that misses its start-by goes back, but its start is spent).
# It also answers, for the worker's timer, the seconds until a locked rate-limited
# queue's window next admits a start: its oldest start in the window leaves it then
# (a log empty before this claim is filled by it, and frees a full window later).
#
# Concurrency keys (jobqueue/keys.py) work the same way with advisory locks, taken
# after the queue rows (the ``keys`` CTE reads ``queues`` first) and in one order,
# (hashtext(key), key), in every claim, so claims cannot deadlock on them either. A
# hash shared by two keys only makes their claims wait for each other. Which keys:
# a walk over the distinct keys of ready jobs (a loose scan of jobqueue_job_key_line,
# one index probe per key), starting after the key this worker looked at last and
# wrapping around, so that every key gets its turn however long one key's backlog
# is; it passes over keys at their limit (by its snapshot, which CLAIM re-counts
# after the lock) and stops at ``free`` keys or KEY_WALK probes. It answers the
# key to start after next time. Without keyed jobs the walk is one empty probe.
LOCK_LIMITS = """
WITH queues AS (
    SELECT l.queue, l.rate, l.per,
           (SELECT min(s) FROM unnest(l.starts) AS s
            WHERE s >= clock_timestamp() - make_interval(secs => l.per + %(slack)s)) AS oldest
    FROM jobqueue_queuelimit AS l
    WHERE %(soon)s > 0 {limit_filter}
      AND l.queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND EXISTS (SELECT FROM jobqueue_job AS j
                  WHERE j.status = 'queued' AND j.queue = l.queue AND j.scheduled_at <= now())
    ORDER BY l.queue
    FOR UPDATE OF l
), after_cursor(k, n) AS MATERIALIZED (
    WITH RECURSIVE walk(k, n) AS (
        (SELECT concurrency_key, 1 FROM jobqueue_job
         WHERE status = 'queued' AND concurrency_key > %(after)s AND %(free)s > 0
         ORDER BY concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobqueue_job
                WHERE status = 'queued' AND concurrency_key > walk.k
                ORDER BY concurrency_key LIMIT 1), walk.n + 1
        FROM walk WHERE walk.k IS NOT NULL AND walk.n < %(walk)s
    )
    SELECT k, n FROM walk WHERE k IS NOT NULL
), from_start(k, n) AS MATERIALIZED (
    WITH RECURSIVE walk(k, n) AS (
        (SELECT concurrency_key, (SELECT count(*) FROM after_cursor) + 1 FROM jobqueue_job
         WHERE status = 'queued' AND concurrency_key IS NOT NULL
           AND concurrency_key <= %(after)s AND %(free)s > 0
           AND (SELECT count(*) FROM after_cursor) < %(walk)s
         ORDER BY concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobqueue_job
                WHERE status = 'queued' AND concurrency_key > walk.k
                  AND concurrency_key <= %(after)s
                ORDER BY concurrency_key LIMIT 1), walk.n + 1
        FROM walk WHERE walk.k IS NOT NULL AND walk.n < %(walk)s
    )
    SELECT k, n FROM walk WHERE k IS NOT NULL
), walked AS (
    SELECT k, n FROM after_cursor UNION ALL SELECT k, n FROM from_start
), eligible AS (
    SELECT w.k, w.n FROM walked AS w
    WHERE EXISTS (SELECT FROM jobqueue_job AS j
                  WHERE j.status = 'queued' AND j.concurrency_key = w.k
                    AND j.scheduled_at <= now() {key_filter}
                    AND j.queue NOT IN (SELECT queue FROM jobqueue_queuepause))
      AND (SELECT count(*) FROM jobqueue_job AS r
           WHERE r.status = 'running' AND r.concurrency_key = w.k)
          < (SELECT j.concurrency_limit FROM jobqueue_job AS j
             WHERE j.status = 'queued' AND j.concurrency_key = w.k
             ORDER BY j.priority DESC, j.scheduled_at, j.id LIMIT 1)
    ORDER BY w.n
    LIMIT %(free)s
), keys AS (
    SELECT k, n, pg_advisory_xact_lock(hashtext('jobqueue.concurrency_key'), hashtext(k))
    FROM (SELECT k, n FROM eligible
          WHERE (SELECT count(*) FROM queues) >= 0  -- the queues' row locks first
          ORDER BY hashtext(k), k OFFSET 0) AS ordered
)
SELECT set_config('jobqueue.limited', COALESCE((SELECT array_agg(queue)::text FROM queues), ''),
                  true),
       COALESCE((SELECT array_agg(queue) FROM queues WHERE rate IS NOT NULL), '{{}}'),
       (SELECT min(extract(epoch FROM COALESCE(oldest, clock_timestamp()) - clock_timestamp())
                   + per + %(slack)s) FROM queues WHERE rate IS NOT NULL),
       set_config('jobqueue.keys', COALESCE((SELECT array_agg(k)::text FROM keys), ''), true),
       COALESCE((SELECT k FROM keys ORDER BY n DESC LIMIT 1),
                (SELECT k FROM walked ORDER BY n DESC LIMIT 1)),
       {present}
"""
# Distinct keys one claim looks at, at most (index probes).
KEY_WALK = 200
# Whether any limit is in play for this worker: a limit row of a queue it serves, or a
# ready keyed job. While none is, the worker claims with CLAIM_PLAIN (the claim of an
# unlimited world, which never takes a limited or keyed job) and sends this probe
# instead of LOCK_LIMITS: two index probes. A worker that sees one appear claims again
# at once, within limits; LOCK_LIMITS answers the same question, to go back.
LIMITS_PRESENT = """(EXISTS (SELECT FROM jobqueue_queuelimit AS l WHERE true {limit_filter})
        OR EXISTS (SELECT FROM jobqueue_job
                   WHERE status = 'queued' AND concurrency_key IS NOT NULL))"""
_SERVED = "AND l.queue = ANY(%(queues)s)"
PROBE_LIMITS_ANY_QUEUE = "SELECT " + LIMITS_PRESENT.format(limit_filter="")
PROBE_LIMITS_QUEUES = "SELECT " + LIMITS_PRESENT.format(limit_filter=_SERVED)
LOCK_LIMITS_ANY_QUEUE = LOCK_LIMITS.format(
    limit_filter="", key_filter="", present=LIMITS_PRESENT.format(limit_filter="")
)
LOCK_LIMITS_QUEUES = LOCK_LIMITS.format(
    limit_filter=_SERVED,
    key_filter="AND j.queue = ANY(%(queues)s)",
    present=LIMITS_PRESENT.format(limit_filter=_SERVED),
)

# Claim up to %(demand)s ready jobs for one worker in one round trip: the CTE
# walks the partial claim index in claim order and skips rows that another
# worker has locked, so workers never wait for or double-claim each other.
# Each claimed row gets a fresh lease_token: the fencing token of this attempt.
# cancel_requested is left as it is: a queued job never carries one (every path
# that re-queues a job with a cancel request ends it cancelled instead).
# The claim also announces the ids on the events channel, so that a long-poll
# on a job sees it start; in chunks, as a NOTIFY payload stops at 8000 bytes.
# Paused queues are skipped: the subquery reads the (tiny) pause table once per
# claim into a hash (a "hashed SubPlan") that each row probes. Written as NOT IN
# on purpose: the planner gives that a fixed selectivity and keeps walking the
# claim index, where "queue <> ALL(ARRAY(...))" is estimated from the column's
# statistics, which with one queue say it matches no row, and made the planner
# sort the whole backlog (24 ms instead of 5 per claim of 100 from 20,000).
# Limited queues are skipped the same way by ``unlimited``; ``within_limits``
# takes them, queue by queue through the per-queue index
# (jobqueue_job_line), only those LOCK_LIMITS locked, up to the room each
# limit leaves (``room``: LEAST ignores the NULL of a limit not set). Keyed jobs
# are skipped by both; ``keyed`` takes them, key by key through
# jobqueue_job_key_line, only for the keys LOCK_LIMITS locked, up to the room
# each key leaves (``within_keys``), and still within their queue's room.
# The jobs of unlimited queues without a key, ready, in claim order (both claims below).
READY_UNLIMITED = """FROM jobqueue_job
    WHERE status = 'queued' AND scheduled_at <= now() {queue_filter}
      AND queue NOT IN (SELECT queue FROM jobqueue_queuepause)
      AND queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
      AND concurrency_key IS NULL
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED"""
# What a claim takes while no limit is in play (SELECTION_PLAIN: no limited queue, no
# keyed job, so never a job a limit guards), or while one is (SELECTION_WITHIN_LIMITS).
SELECTION_PLAIN = """chosen AS (
    SELECT id {ready_unlimited}
)"""
SELECTION_WITHIN_LIMITS = """limited AS (
    SELECT l.queue, l.concurrency, l.rate, l.per, l.starts FROM jobqueue_queuelimit AS l
    WHERE l.queue = ANY(NULLIF(current_setting('jobqueue.limited', true), '')::text[])
), clock AS (
    SELECT clock_timestamp() AS t
), room AS (
    SELECT l.queue, LEAST(
        CASE WHEN l.rate IS NULL THEN %(free)s ELSE %(soon)s END,
        l.concurrency - (SELECT count(*) FROM jobqueue_job AS r
                         WHERE r.status = 'running' AND r.queue = l.queue),
        l.rate - (SELECT count(*) FROM unnest(l.starts) AS s
                  WHERE s >= (SELECT t FROM clock) - make_interval(secs => l.per + %(slack)s))
    ) AS n
    FROM limited AS l
), locked_keys AS (
    -- The keys LOCK_LIMITS locked, with their running jobs counted after the lock.
    SELECT k.key, (SELECT count(*) FROM jobqueue_job AS r
                   WHERE r.status = 'running' AND r.concurrency_key = k.key) AS running
    FROM unnest(NULLIF(current_setting('jobqueue.keys', true), '')::text[]) AS k(key)
), unlimited AS (
    SELECT id, queue, priority, scheduled_at, NULL::text AS concurrency_key,
           NULL::int AS concurrency_limit
    {ready_unlimited}
), within_limits AS (
    SELECT p.* FROM room CROSS JOIN LATERAL (
        SELECT id, queue, priority, scheduled_at, NULL::text AS concurrency_key,
               NULL::int AS concurrency_limit
        FROM jobqueue_job AS j
        WHERE j.status = 'queued' AND j.queue = room.queue AND j.scheduled_at <= now()
          AND j.concurrency_key IS NULL
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT %(soon)s
        FOR UPDATE SKIP LOCKED
    ) AS p
    WHERE room.n > 0
), keyed AS (
    -- A keyed job of a limited queue only while this claim holds that queue's row too.
    SELECT p.* FROM locked_keys AS k CROSS JOIN LATERAL (
        SELECT id, queue, priority, scheduled_at, concurrency_key, concurrency_limit
        FROM jobqueue_job AS j
        WHERE j.status = 'queued' AND j.concurrency_key = k.key AND j.scheduled_at <= now()
          {queue_filter}
          AND j.queue NOT IN (SELECT queue FROM jobqueue_queuepause)
          AND (j.queue NOT IN (SELECT queue FROM jobqueue_queuelimit)
               OR j.queue IN (SELECT queue FROM room))
        ORDER BY j.priority DESC, j.scheduled_at, j.id
        LIMIT %(free)s
        FOR UPDATE SKIP LOCKED
    ) AS p
), picked AS (
    SELECT * FROM unlimited UNION ALL SELECT * FROM within_limits UNION ALL SELECT * FROM keyed
), within_keys AS (
    -- Each key's first (limit - running) jobs in claim order.
    SELECT * FROM (
        SELECT p.*, k.running, row_number() OVER (
            PARTITION BY p.concurrency_key ORDER BY p.priority DESC, p.scheduled_at, p.id) AS rank
        FROM picked AS p LEFT JOIN locked_keys AS k ON k.key = p.concurrency_key
    ) AS ranked
    WHERE concurrency_key IS NULL OR rank <= concurrency_limit - running
), chosen AS (
    -- Each limited queue's first ``room`` jobs in claim order, then the best of all.
    SELECT id FROM (
        SELECT p.id, p.priority, p.scheduled_at, room.n, row_number() OVER (
            PARTITION BY p.queue ORDER BY p.priority DESC, p.scheduled_at, p.id) AS rank
        FROM within_keys AS p LEFT JOIN room ON room.queue = p.queue
    ) AS ranked
    WHERE n IS NULL OR rank <= n
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(demand)s
)"""
# The rate log, written by the claim within limits: drop the starts out of every
# window, add this claim's. (A data-modifying CTE always runs, read or not.)
LOG_STARTS = """, logged AS (
    UPDATE jobqueue_queuelimit AS l
    SET starts = ARRAY(SELECT s FROM unnest(l.starts) AS s
                       WHERE s >= c.t - make_interval(secs => l.per + %(slack)s))
                 || array_fill(c.t, ARRAY[n.started])
    FROM (SELECT queue, count(*)::int AS started FROM claimed GROUP BY queue) AS n, clock AS c
    WHERE l.queue = n.queue AND l.rate IS NOT NULL
      AND l.queue IN (SELECT queue FROM limited)
)"""
CLAIM = """
WITH {selection}, claimed AS (
    UPDATE jobqueue_job AS j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(),
        heartbeat_at = now(), worker_id = %(worker)s,
        lease_token = nextval('jobqueue_job_lease_seq')
    -- An id array, not a join: the planner then always looks rows up by primary
    -- key instead of hashing the whole table when it is mid-sized.
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    -- Arguments as JSON text: the child that runs the job parses them, and the
    -- supervisor knows their size without parsing them.
    RETURNING j.id, j.task, j.args::text, j.kwargs::text, j.attempts, j.max_attempts,
              j.timeout_seconds, j.priority, j.scheduled_at, j.queue, j.lease_token
){logging}, announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / {chunk} AS chunk FROM claimed) AS c
    GROUP BY chunk
)
-- The condition makes the announcement run (a CTE nobody reads is skipped; a
-- join that adds no column would be removed) and is always true: the count
-- reads every chunk's row once, as an init plan, before the first row is returned.
SELECT claimed.* FROM claimed WHERE (SELECT count(*) FROM announced) >= 0
"""
CLAIM_PLAIN_ANY_QUEUE, CLAIM_PLAIN_QUEUES, CLAIM_ANY_QUEUE, CLAIM_QUEUES = (
    CLAIM.format(selection=selection, logging=logging, chunk=EVENTS_CHUNK).format(
        ready_unlimited=READY_UNLIMITED.format(queue_filter=queue_filter), queue_filter=queue_filter
    )
    for selection, logging in ((SELECTION_PLAIN, ""), (SELECTION_WITHIN_LIMITS, LOG_STARTS))
    for queue_filter in ("", "AND queue = ANY(%(queues)s)")
)

# Record the outcomes of finished attempts in one statement, fenced by the
# attempt's token: an outcome lands only while the row is still running the
# same attempt. A job rescued from this worker (it was cut off past its lease),
# and perhaps claimed again since (by anyone, this worker included), has another
# token or none, and the late outcome changes nothing. Returns the ids written.
#
# Cancel wins: an attempt that failed with attempts left, or failed for good,
# on a job whose cancellation was requested, ends the job cancelled.
# started_at becomes the moment the child began the attempt, so a job's wait in
# a child's queue is not counted as run time.
ACK = f"""
WITH outcome AS (
    SELECT * FROM unnest(
        %(ids)s::bigint[], %(tokens)s::bigint[], %(statuses)s::text[], %(results)s::jsonb[],
        %(errors)s::jsonb[], %(scheduled)s::timestamptz[], %(started)s::timestamptz[]
    ) AS o(id, token, status, result, error, scheduled_at, started_at)
), done AS (
    UPDATE jobqueue_job AS j
    SET status = CASE WHEN j.cancel_requested
                           AND o.status IN ('queued', 'failed', 'snoozed', 'late')
                      THEN 'cancelled' WHEN o.status IN ('snoozed', 'late') THEN 'queued'
                      ELSE o.status END,
        -- A snoozed attempt is refunded (as a give-back is): it ran, but did not fail.
        -- A late one (a rate-limited job that reached its child too late: never run)
        -- is refunded too, and leaves no run behind.
        attempts = CASE WHEN o.status IN ('snoozed', 'late') AND NOT j.cancel_requested
                        THEN GREATEST(j.attempts - 1, 0) ELSE j.attempts END,
        result = o.result,
        errors = CASE
            WHEN o.error IS NOT NULL THEN j.errors || o.error
            WHEN o.status IN ('snoozed', 'late') AND j.cancel_requested
            THEN j.errors || jsonb_build_array(
                jsonb_build_object('attempt', j.attempts, 'traceback', '', 'at', now(),
                                   'type', 'jobqueue.exceptions.JobCancelled',
                                   'message', CASE WHEN o.status = 'late'
                                                   THEN 'cancelled before it started'
                                                   ELSE 'cancelled while snoozed' END,
                                   'worker', %(worker_name)s::text))
            ELSE j.errors END,
        scheduled_at = COALESCE(o.scheduled_at, j.scheduled_at),
        finished_at = CASE WHEN o.status IN ('queued', 'snoozed', 'late') AND NOT j.cancel_requested
                           THEN NULL ELSE now() END,
        started_at = COALESCE(o.started_at, j.started_at),
        runs = CASE WHEN o.status = 'late' THEN j.runs ELSE j.runs || jsonb_build_array(
            jsonb_build_object(
                'attempt', j.attempts, 'worker_id', %(worker)s, 'worker', %(worker_name)s::text,
                'started_at', COALESCE(o.started_at, j.started_at), 'finished_at', now(),
                'outcome', CASE WHEN o.status = 'queued' THEN 'failed' ELSE o.status END))
            END,
        worker_id = NULL,
        heartbeat_at = NULL,
        lease_token = NULL
    FROM outcome AS o
    WHERE j.id = o.id AND j.lease_token = o.token AND j.status = 'running'
    RETURNING j.id
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / {EVENTS_CHUNK} AS chunk FROM done) AS c
    GROUP BY chunk
)
SELECT COALESCE((SELECT array_agg(id) FROM done), '{{}}'), (SELECT count(*) FROM announced)
"""

# Give claimed jobs back (shutdown, or never started), fenced by token: the
# attempt charged at claim time is refunded and they keep their place in line.
# Cancel wins: a job whose cancellation was requested ends cancelled instead.
# Re-queued jobs wake the workers of their queue; every change is announced.
GIVE_BACK = """
WITH given AS (
    UPDATE jobqueue_job AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts
                        ELSE GREATEST(j.attempts - 1, 0) END,
        finished_at = CASE WHEN j.cancel_requested THEN now() END,
        errors = CASE WHEN j.cancel_requested THEN j.errors || jsonb_build_array(
            jsonb_build_object('attempt', j.attempts, 'type', 'jobqueue.exceptions.JobCancelled',
                               'message', 'cancelled: its worker stopped before it finished',
                               'traceback', '', 'at', now(), 'worker', %(worker_name)s::text))
            ELSE j.errors END,
        worker_id = NULL, heartbeat_at = NULL, lease_token = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS g(id, token)
    WHERE j.id = g.id AND j.lease_token = g.token AND j.status = 'running'
    RETURNING j.id, j.status, j.queue
)
SELECT array_agg(id), pg_notify(%(channel)s, string_agg(id::text, ',')),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM given WHERE status = 'queued') AS s)
FROM given HAVING count(*) > 0
"""

# After a reconnect: jobs committed as claimed by this worker whose claim's
# answer was lost with the connection (their tokens are none the worker knows).
# The worker never got them, and would never run or renew them, so they go back
# to the queue at once rather than wait out their lease.
GIVE_BACK_UNKNOWN = """
UPDATE jobqueue_job
SET status = 'queued', attempts = GREATEST(attempts - 1, 0), worker_id = NULL,
    heartbeat_at = NULL, lease_token = NULL
WHERE worker_id = %(worker)s AND status = 'running' AND NOT (lease_token = ANY(%(known)s))
RETURNING id
"""

# Write JOBQUEUE["QUEUES"]'s limits to jobqueue_queuelimit (each worker does as it
# connects, and the admin's limits page as it opens): rows from settings follow
# them, and go when their queue leaves them; rows staff edited (source "admin")
# are left alone. Rows already equal are not written, so workers starting
# together do not queue behind each other's row locks for nothing.
SYNC_LIMITS = """
WITH wanted AS (
    SELECT * FROM unnest(%(queues)s::text[], %(concurrency)s::int[], %(rate)s::int[],
                         %(per)s::float8[]) AS w(queue, concurrency, rate, per)
), gone AS (
    DELETE FROM jobqueue_queuelimit AS l
    WHERE l.source = 'settings' AND l.queue NOT IN (SELECT queue FROM wanted)
)
INSERT INTO jobqueue_queuelimit AS l (queue, concurrency, rate, per, source, starts, updated_at)
SELECT queue, concurrency, rate, per, 'settings', '{}', now() FROM wanted
ON CONFLICT (queue) DO UPDATE
SET concurrency = EXCLUDED.concurrency, rate = EXCLUDED.rate, per = EXCLUDED.per,
    updated_at = now()
WHERE l.source = 'settings'
  AND (l.concurrency, l.rate, l.per) IS DISTINCT FROM (EXCLUDED.concurrency, EXCLUDED.rate,
                                                       EXCLUDED.per)
"""


REGISTER_WORKER = """
INSERT INTO jobqueue_worker (hostname, pid, queues, concurrency, started_at, last_heartbeat)
VALUES (%(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, now(), now())
RETURNING id
"""

UNREGISTER_WORKER = "DELETE FROM jobqueue_worker WHERE id = %(worker)s"

# The worker's heartbeat, and the lease of the jobs it has in hand, in one
# statement. Only the (id, token) pairs the worker holds are renewed, so a job
# rescued and re-claimed since is not (its token changed). Those rows are also
# re-adopted: worker_id is set again, as an admin deleting the worker row sets
# it NULL; to NULL if the row is gone (the worker registers again, then beats).
# Returns whether the worker row exists, the ids still held, and those of them
# whose cancellation was requested. A job in hand but not returned was taken
# from this worker: it stops running it.
HEARTBEAT = """
WITH me AS (
    UPDATE jobqueue_worker SET last_heartbeat = now(), lost_at = NULL
    WHERE id = %(worker)s RETURNING id
), held AS (
    UPDATE jobqueue_job AS j SET heartbeat_at = now(), worker_id = (SELECT id FROM me)
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS h(id, token)
    WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
    RETURNING j.id, j.cancel_requested
)
SELECT (SELECT count(*) FROM me) AS alive,
       COALESCE((SELECT array_agg(id) FROM held), '{}') AS held_ids,
       COALESCE((SELECT array_agg(id) FROM held WHERE cancel_requested), '{}') AS cancel_ids
"""

# Rescue a bounded batch of running jobs whose lease ran out (their worker was
# killed, lost power or lost its connection): re-queue those with attempts
# left, fail the rest with a "worker lost" error, cancel those asked to stop.
# Clearing lease_token fences the lost attempt out: if its worker comes back,
# its ack, progress and heartbeat match nothing. By then its children have
# stopped themselves (self-fencing stops them a margin before the lease ends).
RESCUE = """
WITH lost AS (
    SELECT id FROM jobqueue_job
    WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => %(lease)s)
    ORDER BY heartbeat_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE jobqueue_job AS j
    SET status = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.attempts < j.max_attempts THEN 'queued'
            ELSE 'failed' END,
        finished_at = CASE
            WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN now() END,
        scheduled_at = now(),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts,
            'type', 'jobqueue.exceptions.WorkerLost',
            'message', format('worker %%s stopped heart-beating (lease %%s s)',
                              j.worker_id, %(lease)s),
            'traceback', '',
            'at', now())),
        runs = j.runs || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempts, 'worker_id', j.worker_id, 'started_at', j.started_at,
            'finished_at', now(), 'outcome', 'lost')),
        worker_id = NULL,
        heartbeat_at = NULL,
        lease_token = NULL
    FROM lost WHERE j.id = lost.id
    RETURNING j.id, j.status, j.queue
), announced AS (
    SELECT pg_notify(%(channel)s, string_agg(id::text, ',')) FROM rescued HAVING count(*) > 0
)
SELECT id, status, queue FROM rescued WHERE (SELECT count(*) FROM announced) >= 0
"""

MARK_LOST_WORKERS = """
UPDATE jobqueue_worker SET lost_at = now()
WHERE lost_at IS NULL AND last_heartbeat < now() - make_interval(secs => %(lease)s)
"""

# Progress from task code, fenced by the attempt's token: returns no row when
# the attempt no longer holds the job (rescued, re-claimed, finished), else
# whether cancellation was requested, which makes every progress call the
# task's cancellation check point too.
PROGRESS = """
WITH updated AS (
    UPDATE jobqueue_job
    SET progress_percent = COALESCE(%(percent)s, progress_percent),
        progress_message = COALESCE(%(message)s, progress_message),
        progress_updated_at = now()
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
    RETURNING cancel_requested
)
SELECT cancel_requested, pg_notify(%(channel)s, %(id)s::text) FROM updated
"""

# Cancel: a queued job is cancelled at once, a running one is asked to stop.
# Rows are locked in id order first (so two multi-row cancels, or a cancel and
# a worker's sorted ack, cannot deadlock), then changed under the lock, so it
# is atomic against a claim or an ack: whichever commits first, the other
# re-reads the row. A claim that commits first makes this a request to stop;
# a cancel that commits first leaves the claim nothing to take.
CANCEL = """
WITH locked AS (
    SELECT id FROM jobqueue_job WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE
), changed AS (
    UPDATE jobqueue_job AS j
    SET cancel_requested = true,
        status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
        finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
        errors = CASE WHEN status = 'queued' THEN errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempts, 'type', 'jobqueue.exceptions.JobCancelled',
            'message', 'cancelled before it ran', 'traceback', '', 'at', now()))
            ELSE errors END
    FROM locked WHERE j.id = locked.id AND j.status IN ('queued', 'running')
    RETURNING j.id
)
SELECT array_agg(id), pg_notify(%(channel)s, string_agg(id::text, ',')) FROM changed
HAVING count(*) > 0
"""

# Retry: a failed or cancelled job goes back to the queue with a fresh
# attempt budget; its error and run history stay. Rows are locked in id order.
# A unique job whose key another live job holds stays as it is (re-queuing it
# would make two live jobs of one key, which the unique index refuses).
RETRY = """
WITH locked AS (
    SELECT id FROM jobqueue_job WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE
), changed AS (
    UPDATE jobqueue_job AS j
    SET status = 'queued', attempts = 0, scheduled_at = now(), finished_at = NULL,
        started_at = NULL, cancel_requested = false, result = NULL, worker_id = NULL,
        lease_token = NULL,
        progress_percent = NULL, progress_message = '', progress_updated_at = NULL
    FROM locked WHERE j.id = locked.id AND j.status IN ('failed', 'cancelled')
      AND NOT EXISTS (SELECT FROM jobqueue_job AS o
                      WHERE o.unique_key = j.unique_key AND o.unique_states ? o.status)
    RETURNING j.id, j.queue
)
SELECT array_agg(id), pg_notify(%(channel)s, string_agg(id::text, ',')),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM changed) AS s)
FROM changed
HAVING count(*) > 0
"""


# One enqueue: a plain INSERT (the ORM's compile step cost more than the round trip).
INSERT_JOB = """
INSERT INTO jobqueue_job (task, queue, priority, max_attempts, timeout_seconds, created_at,
                          scheduled_at, args, kwargs, owner_id, idempotency_key,
                          status, errors, progress_message, attempts, cancel_requested)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued', '[]', '', 0, false)
RETURNING id
"""

# Bulk enqueue: ids first (so callers get them back), then one COPY of all rows.
# The sequence is looked up once (a scalar subquery), not once per id, and the
# ids come back as one array rather than one row each.
ALLOCATE_IDS = """
SELECT array_agg(nextval((SELECT pg_get_serial_sequence('jobqueue_job', 'id'))::regclass))
FROM generate_series(1, %(n)s)
"""
COPY_JOBS = """
COPY jobqueue_job (id, args, kwargs, task, queue, priority, max_attempts, timeout_seconds,
                   created_at, scheduled_at, status, errors, progress_message, attempts,
                   cancel_requested)
FROM STDIN
"""
COPY_CONSTANTS = ("queued", "[]", "", 0, False)


# Concurrency keys (jobqueue/keys.py): jobs inserted in this transaction get their
# keys before it commits, so no worker ever sees a keyed job without its key.
SET_CONCURRENCY_KEYS = """
UPDATE jobqueue_job AS j SET concurrency_key = k.key, concurrency_limit = %(limit)s
FROM unnest(%(ids)s::bigint[], %(keys)s::text[]) AS k(id, key)
WHERE j.id = k.id
"""


# Unique jobs (jobqueue/scheduling/unique.py). The arbiter of ON CONFLICT is the partial
# unique index jobqueue_job_unique (migration 0007), named by its columns and
# condition.
UNIQUE_CONFLICT = "(unique_key) WHERE unique_key IS NOT NULL AND unique_states ? status"

# One unique enqueue: insert the job unless a job with its key is live (in one of
# its own unique_states), then answer (id, duplicate): the new job's id, or the live
# one's. Who holds what: the insert takes the key's index entry; a concurrent insert
# of the same key waits for that transaction to end, then does nothing if it
# committed (or inserts, if it rolled back). The live job is read in this
# statement's snapshot, which misses a job committed while this statement waited
# on it: then no row comes back, and insert_unique_job runs the statement again.
INSERT_UNIQUE_JOB = f"""
WITH inserted AS (
    INSERT INTO jobqueue_job (task, queue, priority, max_attempts, timeout_seconds, created_at,
                              scheduled_at, args, kwargs, owner_id, idempotency_key,
                              status, errors, progress_message, attempts, cancel_requested,
                              unique_key, unique_states)
    VALUES (%(task)s, %(queue)s, %(priority)s, %(max_attempts)s, %(timeout)s, %(created_at)s,
            %(scheduled_at)s, %(args)s, %(kwargs)s, %(owner)s, %(idempotency_key)s,
            'queued', '[]', '', 0, false, %(key)s, %(states)s)
    ON CONFLICT {UNIQUE_CONFLICT} DO NOTHING
    RETURNING id
)
SELECT id, false FROM inserted
UNION ALL
SELECT id, true FROM jobqueue_job
WHERE unique_key = %(key)s AND unique_states ? status AND NOT EXISTS (SELECT FROM inserted)
"""

# enqueue_many of a unique task: COPY cannot skip conflicts, so the rows are copied
# into a temporary table first, then moved with INSERT ... ON CONFLICT DO NOTHING
# (the same arbitration as INSERT_UNIQUE_JOB, duplicates within the batch included:
# the first in id order wins). The table goes at the end of the transaction.
STAGE_JOBS = """
CREATE TEMPORARY TABLE jobqueue_job_staging (LIKE jobqueue_job INCLUDING DEFAULTS) ON COMMIT DROP
"""
COPY_STAGED = """
COPY jobqueue_job_staging (id, args, kwargs, unique_key, task, queue, priority, max_attempts,
                           timeout_seconds, created_at, scheduled_at, status, errors,
                           progress_message, attempts, cancel_requested, unique_states)
FROM STDIN
"""
INSERT_STAGED = f"""
INSERT INTO jobqueue_job
SELECT * FROM jobqueue_job_staging WHERE id = ANY(%(ids)s) ORDER BY id
ON CONFLICT {UNIQUE_CONFLICT} DO NOTHING
RETURNING id
"""
# The live jobs holding these keys (the duplicates' answer).
LIVE_BY_KEY = """
SELECT unique_key, id FROM jobqueue_job WHERE unique_key = ANY(%(keys)s) AND unique_states ? status
"""
# How many times an enqueue looks again for the live job it collided with before it
# gives up; each miss means that job was committed or finished just then.
UNIQUE_ROUNDS = 50


class UniqueRace(RuntimeError):
    """A unique enqueue kept colliding with jobs that changed under it. Do not expect it."""


def insert_unique_job(
    cursor: Any, row: Sequence[Any], key: str, states: Sequence[str]
) -> tuple[int, bool]:
    """Insert one queued job ``row`` (as ``insert_job``) unless a job holding ``key`` is live
    in one of its ``states``; returns (the new or the live job's id, whether it was live)."""
    names = ("task", "queue", "priority", "max_attempts", "timeout", "created_at",
             "scheduled_at", "args", "kwargs", "owner", "idempotency_key")  # fmt: skip
    params = {**dict(zip(names, row, strict=True)), "key": key, "states": json.dumps(list(states))}
    for _ in range(UNIQUE_ROUNDS):
        cursor.execute(INSERT_UNIQUE_JOB, params)
        answer = cursor.fetchone()
        if answer is not None:
            return answer[0], answer[1]
    raise UniqueRace(f"no job holds unique key {key!r}, yet none could be inserted")


def move_staged_unique(cursor: Any, keys: dict[int, str]) -> dict[int, int]:
    """Move the staged jobs (``keys``: staged id -> unique key) into the table, each unless
    its key is live; returns staged id -> the id of the job that holds its key (its own
    when it was inserted)."""
    settled: dict[int, int] = {}
    pending = sorted(keys)
    for _ in range(UNIQUE_ROUNDS):
        cursor.execute(INSERT_STAGED, {"ids": pending})
        settled.update((job_id, job_id) for (job_id,) in cursor.fetchall())
        pending = [i for i in pending if i not in settled]
        cursor.execute(LIVE_BY_KEY, {"keys": sorted({keys[i] for i in pending})})
        live = dict(cursor.fetchall())
        settled.update((i, live[keys[i]]) for i in pending if keys[i] in live)
        pending = [i for i in pending if i not in settled]
        if not pending:
            return settled
    raise UniqueRace(f"{len(pending)} staged jobs could neither be inserted nor matched")


def insert_job(cursor: Any, row: Sequence[Any]) -> int:
    """Insert one queued job ``(task, queue, priority, max_attempts, timeout, created_at,
    scheduled_at, args_json, kwargs_json, owner_id, idempotency_key)``; returns its id."""
    cursor.execute(INSERT_JOB, row)
    return cursor.fetchone()[0]


def set_concurrency_keys(cursor: Any, keys: dict[int, str], limit: int) -> None:
    """Give the jobs ``keys`` (id -> key), inserted in the caller's transaction, their key."""
    if keys:
        ids = sorted(keys)  # rows locked in id order, as every multi-row write here
        cursor.execute(
            SET_CONCURRENCY_KEYS, {"ids": ids, "keys": [keys[i] for i in ids], "limit": limit}
        )


def allocate_job_ids(cursor: Any, n: int) -> list[int]:
    cursor.execute(ALLOCATE_IDS, {"n": n})
    return cursor.fetchone()[0]


def copy_jobs(
    cursor: Any, shared: Sequence[Any], batches: Iterable[Iterable[tuple[int, str, str]]]
) -> None:
    """COPY queued jobs that share ``(task, queue, priority, max_attempts, timeout, created_at,
    scheduled_at)``: each batch of ``(id, args_json, kwargs_json)`` is sent as soon as it is
    drawn, so the server stores one batch while the caller prepares the next.

    Rows go as preformatted COPY text: the shared fields are formatted once, and
    one-line JSON (json.dumps without indent) has no tab or newline to escape, only
    backslashes to double. ``cursor`` may be a Django cursor wrapper.
    """
    suffix = "".join(f"\t{_copy_field(value)}" for value in (*shared, *COPY_CONSTANTS)) + "\n"
    with _raw(cursor).copy(COPY_JOBS) as copy:
        for batch in batches:
            copy.write(
                "".join(
                    f"{job_id}\t{args}\t{kwargs}".replace("\\", "\\\\") + suffix
                    for job_id, args, kwargs in batch
                )
            )


def stage_unique_jobs(
    cursor: Any,
    shared: Sequence[Any],
    states: Sequence[str],
    rows: Iterable[tuple[int, str, str, str]],
) -> None:
    """COPY unique jobs ``(id, args_json, kwargs_json, unique_key)`` sharing ``shared`` (as
    ``copy_jobs``) and ``states`` into a new staging table; ``move_staged_unique`` moves them."""
    cursor.execute(STAGE_JOBS)
    tail = (*shared, *COPY_CONSTANTS, json.dumps(list(states)))
    suffix = "".join(f"\t{_copy_field(value)}" for value in tail) + "\n"
    with _raw(cursor).copy(COPY_STAGED) as copy:
        copy.write(
            "".join(
                f"{job_id}\t{args}\t{kwargs}".replace("\\", "\\\\")
                + f"\t{_copy_field(key)}"
                + suffix
                for job_id, args, kwargs, key in rows
            )
        )


def _raw(cursor: Any) -> Any:
    """The psycopg cursor under a Django cursor wrapper (COPY is psycopg's own)."""
    return getattr(cursor, "cursor", cursor)


def _copy_field(value: Any) -> str:
    """``value`` as one field of COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def claim(
    cursor: Any,
    *,
    worker: int,
    demand: int,
    queues: Sequence[str],
    free: int | None = None,
    soon: int | None = None,
    keys_after: str = "",
    key_walk: int = KEY_WALK,
    within_limits: bool = True,
    lock_cursor: Any = None,
) -> None:
    """Claim up to ``demand`` ready jobs for ``worker``, at most ``free`` (default: all) of
    each queue with a concurrency limit and ``soon`` (default: free) of each rate-limited one.
    Concurrency keys are looked at from the one after ``keys_after`` on (LimitsLocked.key),
    ``key_walk`` of them at most.
    With ``within_limits`` False, the claim takes only jobs no limit guards, and
    ``lock_cursor`` probes whether limits are in play (read with ``limits_present``).

    Two statements, LOCK_LIMITS on ``lock_cursor`` (default ``cursor``) then CLAIM on
    ``cursor``. Limited queues are claimed from only when both share a transaction (a
    pipeline, or a transaction block); otherwise the claim takes unlimited queues only.
    Read the jobs with ``claimed(cursor)``, and the rate-limited queues with
    ``rate_limited(lock_cursor)`` when it is a cursor of its own. Split so that the
    claim can travel in a pipeline with an ack.
    """
    free = demand if free is None else free
    soon = free if soon is None else soon
    lock_cursor = cursor if lock_cursor is None else lock_cursor
    params: dict[str, Any] = {
        "worker": worker,
        "demand": demand,
        "free": free,
        "soon": soon,
        "slack": START_SLACK,
        "after": keys_after,
        "walk": key_walk,
        "channel": EVENTS_CHANNEL,
    }
    if queues:
        params["queues"] = list(queues)
    if within_limits:
        lock_cursor.execute(LOCK_LIMITS_QUEUES if queues else LOCK_LIMITS_ANY_QUEUE, params)
        cursor.execute(CLAIM_QUEUES if queues else CLAIM_ANY_QUEUE, params)
    else:
        lock_cursor.execute(PROBE_LIMITS_QUEUES if queues else PROBE_LIMITS_ANY_QUEUE, params)
        cursor.execute(CLAIM_PLAIN_QUEUES if queues else CLAIM_PLAIN_ANY_QUEUE, params)


def limits_present(lock_cursor: Any) -> bool:
    """The answer of the probe a claim without limits sent on ``lock_cursor``."""
    return bool(lock_cursor.fetchone()[0])


def sync_limits(cursor: Any, specs: Sequence[Any]) -> None:
    """Make the settings' rows of jobqueue_queuelimit match ``specs`` (limits.QueueLimitSpec).

    Rows are written in queue order, the order in which claims lock them (LOCK_LIMITS).
    """
    specs = sorted(specs, key=lambda s: s.queue)
    cursor.execute(
        SYNC_LIMITS,
        {
            "queues": [s.queue for s in specs],
            "concurrency": [s.concurrency for s in specs],
            "rate": [s.rate for s in specs],
            "per": [s.per for s in specs],
        },
    )


@dataclass(frozen=True, slots=True)
class LimitsLocked:
    """What LOCK_LIMITS answered: whether it locked any limited queue (one had ready jobs),
    which of those are rate-limited (their jobs must start within START_SLACK:
    jobqueue/scheduling/limits.py), and the seconds until one of their windows admits a start."""

    any: bool = False
    rated: frozenset[str] = frozenset()
    opens_in: float | None = None
    key: str = ""  # the concurrency key to look after in the next claim ("": from the first)
    present: bool = True  # a limit is in play for this worker (LIMITS_PRESENT)


def limits_locked(lock_cursor: Any) -> LimitsLocked:
    """LOCK_LIMITS' answer on ``lock_cursor``; ``any`` also counts locked concurrency keys."""
    row = lock_cursor.fetchone()
    if row is None:
        return LimitsLocked()
    limited, rated, opens_in, keys, key, present = row
    return LimitsLocked(
        bool(limited) or bool(keys),
        frozenset(rated),
        None if opens_in is None else float(opens_in),
        key or "",
        bool(present),
    )


def claimed(cursor: Any) -> list[tuple]:
    """The rows of the claim run on ``cursor``, in claim order; [] when none were ready."""
    rows = cursor.fetchall()
    rows.sort(key=lambda r: (-r[7], r[8], r[0]))  # RETURNING has no order: restore claim order
    return rows


def ack(cursor: Any, *, worker: int, worker_name: str, outcomes: Sequence[tuple]) -> None:
    """Record outcomes ``(id, token, status, result_json, error_json, scheduled_at, started_at)``
    in one statement; read the ids written with ``acked(cursor)``.

    Rows are joined in ascending id order, so the ack locks them in that order.
    """
    rows = sorted(outcomes)
    ids, tokens, statuses, results, errors, scheduled, started = (
        list(col) for col in zip(*rows, strict=True)
    )
    cursor.execute(
        ACK,
        {
            "worker": worker,
            "worker_name": worker_name,
            "ids": ids,
            "tokens": tokens,
            "statuses": statuses,
            "results": results,
            "errors": errors,
            "scheduled": scheduled,
            "started": started,
            "channel": EVENTS_CHANNEL,
        },
    )


def acked(cursor: Any) -> set[int]:
    """The ids whose outcome the ack run on ``cursor`` wrote (the others were fenced out)."""
    return set(cursor.fetchone()[0])


def give_back(cursor: Any, *, worker_name: str, jobs: Sequence[tuple[int, int]]) -> list[int]:
    """Give back ``(id, token)`` pairs still held; returns the ids given back (or cancelled)."""
    if not jobs:
        return []
    ids, tokens = (list(col) for col in zip(*sorted(jobs), strict=True))
    cursor.execute(
        GIVE_BACK,
        {
            "ids": ids,
            "tokens": tokens,
            "worker_name": worker_name,
            "channel": EVENTS_CHANNEL,
            "queue_channel": QUEUE_CHANNEL,
        },
    )
    row = cursor.fetchone()
    return list(row[0]) if row else []


def give_back_unknown(cursor: Any, *, worker: int, known_tokens: Sequence[int]) -> list[int]:
    """Give back the running jobs ``worker`` holds in the database under tokens it does not know."""
    cursor.execute(GIVE_BACK_UNKNOWN, {"worker": worker, "known": list(known_tokens)})
    return [row[0] for row in cursor.fetchall()]


def register_worker(
    cursor: Any, *, hostname: str, pid: int, queues: Sequence[str], concurrency: int
) -> int:
    from psycopg.types.json import Jsonb

    cursor.execute(
        REGISTER_WORKER,
        {
            "hostname": hostname,
            "pid": pid,
            "queues": Jsonb(list(queues)),
            "concurrency": concurrency,
        },
    )
    return cursor.fetchone()[0]


def unregister_worker(cursor: Any, *, worker: int) -> None:
    cursor.execute(UNREGISTER_WORKER, {"worker": worker})


def heartbeat(
    cursor: Any, *, worker: int, jobs: Sequence[tuple[int, int]]
) -> tuple[bool, set[int], set[int]]:
    """Beat for ``worker`` and renew its ``(id, token)`` jobs in hand.

    Returns (worker row still exists, ids still held, ids of those asked to cancel).
    """
    ids, tokens = (list(col) for col in zip(*sorted(jobs), strict=True)) if jobs else ([], [])
    cursor.execute(HEARTBEAT, {"worker": worker, "ids": ids, "tokens": tokens})
    alive, held, cancel_ids = cursor.fetchone()
    return bool(alive), set(held), set(cancel_ids)


def rescue(cursor: Any, *, lease: float, limit: int = 500) -> list[tuple]:
    """Rescue one bounded batch of jobs whose lease expired; returns (id, status, queue) rows."""
    cursor.execute(MARK_LOST_WORKERS, {"lease": lease})
    cursor.execute(RESCUE, {"lease": lease, "limit": limit, "channel": EVENTS_CHANNEL})
    return cursor.fetchall()


def notify_queues(cursor: Any, queues: Sequence[str]) -> None:
    """Wake workers of ``queues`` (re-queued jobs; inserts notify by trigger)."""
    for queue in sorted(set(queues)):
        cursor.execute("SELECT pg_notify(%s, %s)", [QUEUE_CHANNEL, queue])


def report_progress(
    cursor: Any, *, job_id: int, token: int, percent: float | None, message: str | None
) -> bool | None:
    """Store progress; returns whether cancellation of the job was requested, or None when
    the attempt holding ``token`` no longer holds the job (nothing was stored)."""
    cursor.execute(
        PROGRESS,
        {
            "id": job_id,
            "token": token,
            "percent": percent,
            "message": message,
            "channel": EVENTS_CHANNEL,
        },
    )
    row = cursor.fetchone()
    return None if row is None else bool(row[0])


def cancel(cursor: Any, ids: Sequence[int]) -> list[int]:
    """Cancel queued jobs and ask running ones to stop; returns the ids that changed."""
    cursor.execute(CANCEL, {"ids": list(ids), "channel": EVENTS_CHANNEL})
    row = cursor.fetchone()
    return list(row[0]) if row else []


def retry(cursor: Any, ids: Sequence[int]) -> list[int]:
    """Re-queue failed or cancelled jobs with a fresh attempt budget; returns ids that changed."""
    cursor.execute(
        RETRY, {"ids": list(ids), "channel": EVENTS_CHANNEL, "queue_channel": QUEUE_CHANNEL}
    )
    row = cursor.fetchone()
    return list(row[0]) if row else []


# --- Paused queues (jobqueue/scheduling/pauses.py) -------------------------------------
# Pause: in one transaction, the table lock first (see the interleaving notes at
# the top: it waits for claims under way and holds back new ones until commit),
# then the row. Returns whether the queue was running until now.
PAUSE_LOCK = "LOCK TABLE jobqueue_queuepause IN ACCESS EXCLUSIVE MODE"
PAUSE_QUEUE = """
INSERT INTO jobqueue_queuepause (queue, paused_at, paused_by) VALUES (%(queue)s, now(), %(by)s)
ON CONFLICT (queue) DO NOTHING
RETURNING queue
"""
# Resume: the row goes, and the queue's workers are woken to claim at once.
RESUME_QUEUE = """
WITH resumed AS (DELETE FROM jobqueue_queuepause WHERE queue = %(queue)s RETURNING queue)
SELECT pg_notify(%(channel)s, queue) FROM resumed
"""


def pause_queue(cursor: Any, queue: str, by: str) -> bool:
    """Pause ``queue``; run it in a transaction of its own. Returns False if it was paused."""
    cursor.execute(PAUSE_LOCK)
    cursor.execute(PAUSE_QUEUE, {"queue": queue, "by": by})
    return cursor.fetchone() is not None


def resume_queue(cursor: Any, queue: str) -> bool:
    """Resume ``queue`` and wake its workers; returns False if it was not paused."""
    cursor.execute(RESUME_QUEUE, {"queue": queue, "channel": QUEUE_CHANNEL})
    return cursor.fetchone() is not None


# --- Periodic jobs (jobqueue/scheduling/periodic.py) ------------------------------------
# Every declared schedule gets its row the first time a worker (or the admin, or
# the API) looks, with last_tick = now(): a new schedule starts at its next tick
# instead of firing ticks from before it existed. Concurrent inserts of one name
# wait on each other's index entry and the later one does nothing.
ENSURE_SCHEDULES = """
INSERT INTO jobqueue_schedule (name, enabled, last_tick)
SELECT name, true, now() FROM unnest(%(names)s::text[]) AS n(name)
ON CONFLICT (name) DO NOTHING
"""

# The database's clock (what is due is reckoned on it, not on the host's), and
# the newest tick of the named schedules; one row with NULLs when none exists yet.
SCHEDULE_STATES = """
SELECT now(), s.name, s.last_tick
FROM (SELECT 1) AS one LEFT JOIN jobqueue_schedule AS s ON s.name = ANY(%(names)s)
"""

# Enqueue the due ticks of one schedule: move last_tick from the value the worker
# read (%(seen)s) to the newest tick, and insert one job per tick, in one
# statement, so one transaction (autocommit): the new last_tick and the jobs
# commit together or not at all.
# Who holds what: the UPDATE locks the schedule's row until the commit. A second
# worker enqueuing the same ticks waits on that lock, then re-reads the committed
# row (EvalPlanQual): last_tick is no longer what it read, so its UPDATE matches
# no row and its INSERT, which reads only the updated row, inserts nothing. The
# admin's enable/disable (models.ScheduleQuerySet) updates the same row, so they
# serialise too: no job is enqueued for a schedule disabled before this commits.
# The newest tick's job takes the id written to last_job_id (the foreign key is
# checked at the end of the statement, once the job is in).
ENQUEUE_TICKS = """
WITH advanced AS (
    UPDATE jobqueue_schedule
    SET last_tick = %(newest)s,
        last_job_id = nextval(pg_get_serial_sequence('jobqueue_job', 'id')::regclass)
    WHERE name = %(name)s AND enabled AND last_tick = %(seen)s
    RETURNING last_job_id
)
INSERT INTO jobqueue_job (id, task, queue, priority, max_attempts, timeout_seconds, created_at,
                          scheduled_at, args, kwargs, status, errors, progress_message, attempts,
                          cancel_requested, concurrency_key, concurrency_limit)
SELECT CASE WHEN t.tick = %(newest)s THEN a.last_job_id
            ELSE nextval(pg_get_serial_sequence('jobqueue_job', 'id')::regclass) END,
       %(task)s, %(queue)s, %(priority)s, %(max_attempts)s, %(timeout)s, now(), t.tick,
       %(args)s::jsonb, %(kwargs)s::jsonb, 'queued', '[]', '', 0, false, %(key)s, %(limit)s
FROM advanced AS a CROSS JOIN unnest(%(ticks)s::timestamptz[]) AS t(tick)
ORDER BY t.tick
RETURNING id
"""


def ensure_schedules(cursor: Any, names: Sequence[str]) -> None:
    """Create the rows of the named schedules that have none yet."""
    cursor.execute(ENSURE_SCHEDULES, {"names": list(names)})


def schedule_states(cursor: Any, names: Sequence[str]) -> tuple[datetime, list[tuple]]:
    """The database's now(), and ``(name, last_tick)`` of the named schedules."""
    cursor.execute(SCHEDULE_STATES, {"names": list(names)})
    rows = cursor.fetchall()
    return rows[0][0], [row[1:] for row in rows if row[1] is not None]


def enqueue_ticks(
    cursor: Any, *, schedule: Any, seen: datetime, ticks: Sequence[datetime]
) -> list[int]:
    """Enqueue ``ticks`` (oldest first) of ``schedule`` (a periodic.PeriodicSchedule) if its
    last_tick is still ``seen``; returns the ids of the jobs, [] when another got there first."""
    cursor.execute(
        ENQUEUE_TICKS,
        {
            "name": schedule.name,
            "seen": seen,
            "newest": ticks[-1],
            "ticks": list(ticks),
            "task": schedule.task,
            "queue": schedule.queue,
            "priority": schedule.priority,
            "max_attempts": schedule.max_attempts,
            "timeout": schedule.timeout_seconds,
            "args": schedule.args_json,
            "kwargs": schedule.kwargs_json,
            "key": schedule.concurrency_key,
            "limit": schedule.concurrency_limit,
        },
    )
    return [row[0] for row in cursor.fetchall()]


# purge_jobs: delete one bounded batch of finished jobs, oldest first. The
# keyset (finished_at, id) resumes where the last batch stopped, so no batch
# re-reads index entries of rows already deleted; SKIP LOCKED passes over a
# row someone holds (an admin retrying it) instead of waiting for it, and the
# literal status list lets the planner use the partial index jobqueue_job_finished.
PURGE_BATCH = """
WITH doomed AS (
    SELECT id FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)
      AND finished_at < %(before)s
      AND finished_at >= %(after_at)s AND (finished_at, id) > (%(after_at)s, %(after_id)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    ORDER BY finished_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobqueue_job AS j USING doomed WHERE j.id = doomed.id
RETURNING j.finished_at, j.id, j.status, j.queue
"""

# purge_jobs --dry-run: what a purge would delete, per status and queue.
PURGE_COUNT = """
SELECT status, queue, count(*) FROM jobqueue_job
WHERE status IN ('succeeded', 'failed', 'cancelled') AND status = ANY(%(statuses)s)
  AND finished_at < %(before)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
GROUP BY status, queue ORDER BY status, queue
"""

# Workers flagged lost before the cutoff: their rows only feed the health page.
PURGE_LOST_WORKERS = "DELETE FROM jobqueue_worker WHERE lost_at < %(before)s"
COUNT_LOST_WORKERS = "SELECT count(*) FROM jobqueue_worker WHERE lost_at < %(before)s"

# The admin's purge action: delete the finished jobs among the selected ids,
# passing over any a worker or another admin holds.
PURGE_IDS = """
DELETE FROM jobqueue_job WHERE id IN (
    SELECT id FROM jobqueue_job
    WHERE id = ANY(%(ids)s) AND status IN ('succeeded', 'failed', 'cancelled')
    FOR UPDATE SKIP LOCKED
)
RETURNING id, task, status
"""


# --- Read-only figures for the REST API -------------------------------------
# Each reads only queued and running rows (the backlog) and the jobs that
# finished in the last hour, through partial indexes (migration 0003), so its
# cost does not grow with the finished history kept in the table.

# Per queue: backlog, running, and what finished in the last 5 and 60 minutes.
QUEUE_STATS = """
WITH waiting AS (
    SELECT queue, count(*) AS queued,
           count(*) FILTER (WHERE scheduled_at <= now()) AS ready,
           min(scheduled_at) FILTER (WHERE scheduled_at <= now()) AS oldest_ready
    FROM jobqueue_job WHERE status = 'queued' GROUP BY queue
), active AS (
    SELECT queue, count(*) AS running FROM jobqueue_job WHERE status = 'running' GROUP BY queue
), recent AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE finished_at >= now() - interval '5 minutes') AS finished_5m,
           avg(extract(epoch FROM finished_at - started_at))
               FILTER (WHERE finished_at >= now() - interval '5 minutes') AS mean_5m,
           count(*) AS finished_60m,
           avg(extract(epoch FROM finished_at - started_at)) AS mean_60m
    FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at >= now() - interval '60 minutes'
    GROUP BY queue
)
SELECT queue,
       COALESCE(w.queued, 0), COALESCE(w.ready, 0),
       extract(epoch FROM now() - w.oldest_ready),
       COALESCE(a.running, 0),
       COALESCE(r.succeeded, 0), COALESCE(r.failed, 0), COALESCE(r.cancelled, 0),
       COALESCE(r.finished_5m, 0), r.mean_5m, COALESCE(r.finished_60m, 0), r.mean_60m
FROM waiting AS w FULL JOIN active AS a USING (queue) FULL JOIN recent AS r USING (queue)
ORDER BY queue
"""

# The health page's timings, per queue and per task, over the newest jobs that
# finished in the last hour (at most %(sample)s of them: a backward range scan of
# the jobqueue_job_finished index that stops there, so a busy hour costs no more
# than a quiet one): wait (due to start, which is enqueue to start unless the job
# was delayed or waited to retry) and run time percentiles, and outcomes.
TIMINGS = """
WITH newest AS (
    SELECT queue, task, status, scheduled_at, started_at, finished_at
    FROM jobqueue_job
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at >= now() - interval '60 minutes'
    ORDER BY finished_at DESC
    LIMIT %(sample)s
)
SELECT queue, task, count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status = 'failed'),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started_at - scheduled_at)),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM finished_at - started_at))
FROM newest
GROUP BY GROUPING SETS ((queue), (task))
ORDER BY queue, task
"""


# For a job ``me``, while it is queued (NULLs otherwise): how many ready jobs
# of its queue are ahead of it in claim order, the mean run time of the last
# 100 jobs of its queue that finished within the hour, the concurrency of the
# live workers that serve the queue, and the seconds until it is due. The
# count walks the queue's part of the line index; the mean reads the newest
# finished jobs backwards and stops at 100, where a mean over the whole hour
# read every job finished in it (60 ms per poll with 300,000 of them). CASE
# keeps the subqueries from running at all for other statuses.
POSITION_FIGURES = """
CASE WHEN me.status = 'queued' THEN
    (SELECT count(*) FROM jobqueue_job AS j
     WHERE j.status = 'queued' AND j.queue = me.queue AND j.scheduled_at <= now()
       AND (j.priority > me.priority
            OR (j.priority = me.priority
                AND (j.scheduled_at, j.id) < (me.scheduled_at, me.id)))) END,
CASE WHEN me.status = 'queued' THEN
    (SELECT avg(recent.seconds) FROM (
        SELECT extract(epoch FROM f.finished_at - f.started_at) AS seconds FROM jobqueue_job AS f
        WHERE f.status IN ('succeeded', 'failed', 'cancelled')
          AND f.finished_at >= now() - interval '60 minutes' AND f.queue = me.queue
        ORDER BY f.finished_at DESC LIMIT 100) AS recent) END,
CASE WHEN me.status = 'queued' THEN
    (SELECT COALESCE(sum(w.concurrency), 0) FROM jobqueue_worker AS w
     WHERE w.lost_at IS NULL AND (w.queues = '[]'::jsonb OR w.queues ? me.queue)) END,
CASE WHEN me.status = 'queued' THEN
    extract(epoch FROM greatest(me.scheduled_at - now(), interval '0')) END
"""

# The figures of the queued jobs among %(ids)s. The ids drive a primary key
# lookup each: a deep backlog is never scanned to find them.
QUEUE_POSITIONS = f"""
SELECT me.id, {POSITION_FIGURES}
FROM unnest(%(ids)s::bigint[]) AS ids(id) JOIN jobqueue_job AS me ON me.id = ids.id
WHERE me.status = 'queued'
"""

# One job and its figures in one statement (the API's GET /api/jobs/{id}/):
# {columns} are the job's columns, qualified with ``me.``; %(owner)s limits it
# to one owner's jobs, or is NULL for staff who see every job.
JOB_WITH_POSITION = f"""
SELECT {{columns}}, {POSITION_FIGURES}
FROM jobqueue_job AS me
WHERE me.id = %(id)s AND (%(owner)s::bigint IS NULL OR me.owner_id = %(owner)s::bigint)
"""

# The watched jobs among %(ids)s and their figures, in one statement: what the
# web process's event hub reads when their NOTIFYs arrive (jobqueue/api/hub.py).
# No owner check: each watcher was authorised for its job when it started.
JOBS_WITH_POSITIONS = f"""
SELECT {{columns}}, {POSITION_FIGURES}
FROM jobqueue_job AS me
WHERE me.id = ANY(%(ids)s::bigint[])
"""


def queue_stats(cursor: Any) -> list[tuple]:
    """One row per queue with a backlog, running jobs or jobs finished in the last hour."""
    cursor.execute(QUEUE_STATS)
    return cursor.fetchall()


def timings(cursor: Any, sample: int) -> list[tuple]:
    """``(queue, task, succeeded, failed, wait p50/p95/p99, run p50/p95/p99)`` rows, one
    per queue (task None) and one per task (queue None); see ``TIMINGS``."""
    cursor.execute(TIMINGS, {"sample": sample})
    return cursor.fetchall()


def queue_positions(cursor: Any, ids: Sequence[int]) -> dict[int, tuple]:
    """For each queued job of ``ids``: (ahead, mean seconds, capacity, seconds until due)."""
    if not ids:
        return {}
    cursor.execute(QUEUE_POSITIONS, {"ids": list(ids)})
    return {row[0]: row[1:] for row in cursor.fetchall()}


def job_with_position_sql(columns: str) -> str:
    """``JOB_WITH_POSITION`` for these job columns (``me."id", me."task", ...``)."""
    return JOB_WITH_POSITION.replace("{columns}", columns)


def jobs_with_positions_sql(columns: str) -> str:
    """``JOBS_WITH_POSITIONS`` for these job columns, as ``job_with_position_sql``."""
    return JOBS_WITH_POSITIONS.replace("{columns}", columns)


def job_with_position(
    cursor: Any, sql: str, job_id: int, owner_id: int | None
) -> tuple[tuple, tuple | None] | None:
    """The job's columns and, while it is queued, its figures (as ``queue_positions``).

    ``sql`` is ``job_with_position_sql(columns)``; None when there is no such
    job (among ``owner_id``'s, unless that is None).
    """
    cursor.execute(sql, {"id": job_id, "owner": owner_id})
    row = cursor.fetchone()
    if row is None:
        return None
    figures = tuple(row[-4:])
    return tuple(row[:-4]), (figures if figures[0] is not None else None)


# --- The admin's search ------------------------------------------------------
# The newest jobs whose words (task, error types and messages, argument keys and
# values: migration 0006's search document) include every word of the text.
# One arm per partial index (finished jobs through the GIN index, the backlog
# through the claim and lease indexes), so the planner ORs bitmap scans. The CTE
# is MATERIALIZED so that it runs that way: inlined under the changelist's
# ORDER BY id DESC LIMIT, the planner walked the primary key backwards and
# computed the document of every row it passed (6.8 s for a rare value on 1M rows).
_MATCHES = (
    "jobqueue_search_document(task, args, kwargs, errors) @@ plainto_tsquery('simple', %(text)s)"
)
SEARCH_IDS = f"""
WITH found AS MATERIALIZED (
    SELECT id FROM jobqueue_job
    WHERE (status IN ('succeeded', 'failed', 'cancelled') AND {_MATCHES})
       OR (status = 'queued' AND {_MATCHES})
       OR (status = 'running' AND {_MATCHES})
)
SELECT id FROM found ORDER BY id DESC LIMIT %(limit)s
"""


def search_ids(cursor: Any, text: str, limit: int) -> list[int]:
    """Ids of the newest ``limit`` jobs holding every word of ``text``; none if it has no
    words (``[``)."""
    cursor.execute(SEARCH_IDS, {"text": text, "limit": limit})
    return [row[0] for row in cursor.fetchall()]


# --- Backlog samples for the health page's depth chart -----------------------
# At most once a minute: the NOT EXISTS is a one-time filter (a probe of the
# unique index), so a second call in the same minute reads no job. The counts
# walk the claim and lease partial indexes, i.e. the backlog only, never the
# history. GROUPING SETS adds the total over all queues (queue ""), which exists
# even when the backlog is empty.
RECORD_SAMPLE = """
INSERT INTO jobqueue_queuesample (minute, queue, ready, scheduled, running)
SELECT date_trunc('minute', now()), COALESCE(queue, ''),
       count(*) FILTER (WHERE status = 'queued' AND scheduled_at <= now()),
       count(*) FILTER (WHERE status = 'queued' AND scheduled_at > now()),
       count(*) FILTER (WHERE status = 'running')
FROM jobqueue_job
WHERE status IN ('queued', 'running')
  AND NOT EXISTS (SELECT 1 FROM jobqueue_queuesample
                  WHERE minute = date_trunc('minute', now()) AND queue = '')
GROUP BY GROUPING SETS ((queue), ())
HAVING NOT EXISTS (SELECT 1 FROM jobqueue_queuesample
                   WHERE minute = date_trunc('minute', now()) AND queue = '')
ON CONFLICT (minute, queue) DO NOTHING
"""

# purge_jobs keeps the samples of the last two days (the chart shows one).
PRUNE_SAMPLES = """
DELETE FROM jobqueue_queuesample WHERE minute < now() - interval '2 days'
"""


def record_sample(cursor: Any) -> None:
    """Sample the backlog for this minute, unless it was already (one short statement)."""
    cursor.execute(RECORD_SAMPLE)
