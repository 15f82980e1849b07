"""The claim: up to ``demand`` ready jobs for one worker in one round trip, fenced by a fresh
lease token each, within the limits that LOCK_LIMITS (limits.py) locked."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from jobqueue.queries.channels import EVENTS_CHANNEL, announce_ids
from jobqueue.queries.limits import (
    KEY_WALK,
    LOCK_LIMITS_ANY_QUEUE,
    LOCK_LIMITS_QUEUES,
    PROBE_LIMITS_ANY_QUEUE,
    PROBE_LIMITS_QUEUES,
)
from jobqueue.queries.pauses import PAUSE_GUARD
from jobqueue.scheduling.limits import START_SLACK

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
    {announce}
)
-- The condition makes the announcement run (a CTE nobody reads is skipped; a
-- join that adds no column would be removed) and is always true: the count
-- reads every chunk's row once, as an init plan, before the first row is returned.
SELECT claimed.* FROM claimed WHERE (SELECT count(*) FROM announced) >= 0
"""
CLAIM_PLAIN_ANY_QUEUE, CLAIM_PLAIN_QUEUES, CLAIM_ANY_QUEUE, CLAIM_QUEUES = (
    CLAIM.format(selection=selection, logging=logging, announce=announce_ids("claimed")).format(
        ready_unlimited=READY_UNLIMITED.format(queue_filter=queue_filter), queue_filter=queue_filter
    )
    for selection, logging in ((SELECTION_PLAIN, ""), (SELECTION_WITHIN_LIMITS, LOG_STARTS))
    for queue_filter in ("", "AND queue = ANY(%(queues)s)")
)


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

    Three statements: PAUSE_GUARD and LOCK_LIMITS on ``lock_cursor`` (default ``cursor``),
    then CLAIM on ``cursor``. Limited queues are claimed from, and a pause that returns
    meanwhile is honoured, only when they share a transaction (a pipeline, or a transaction
    block), as the worker sends them; otherwise the claim takes unlimited queues only.
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
    lock_cursor.execute(PAUSE_GUARD)  # before any statement reads the pause table
    if within_limits:
        lock_cursor.execute(LOCK_LIMITS_QUEUES if queues else LOCK_LIMITS_ANY_QUEUE, params)
        cursor.execute(CLAIM_QUEUES if queues else CLAIM_ANY_QUEUE, params)
    else:
        lock_cursor.execute(PROBE_LIMITS_QUEUES if queues else PROBE_LIMITS_ANY_QUEUE, params)
        cursor.execute(CLAIM_PLAIN_QUEUES if queues else CLAIM_PLAIN_ANY_QUEUE, params)


class ClaimedJob(NamedTuple):
    """A row the claim returned: CLAIM's RETURNING columns, in that order."""

    id: int
    task: str
    args_json: str
    kwargs_json: str
    attempts: int  # counting this attempt: the claim charged it
    max_attempts: int
    timeout_seconds: int | None
    priority: int
    scheduled_at: datetime
    queue: str
    lease_token: int


def claimed(cursor: Any) -> list[ClaimedJob]:
    """The rows of the claim run on ``cursor``, in claim order; [] when none were ready."""
    rows = [ClaimedJob(*row) for row in cursor.fetchall()]
    # RETURNING has no order: restore the claim's (priority, then schedule, then creation).
    rows.sort(key=lambda job: (-job.priority, job.scheduled_at, job.id))
    return rows
