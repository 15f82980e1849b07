"""Global limits in the claim: the lock on the limited queues' rows that comes before it, the probe
that tells a worker whether any limit is in play, and the sync of the configured limits.

The lock-by-lock reasoning is the comment above LOCK_LIMITS; docs/sql/claim.sql shows the
statements a claim sends."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
