"""The end of an attempt, fenced by its token: the ack of outcomes, and the give-back of jobs
claimed but not run."""

from collections.abc import Sequence
from typing import Any

from jobqueue.queries.channels import EVENTS_CHANNEL, QUEUE_CHANNEL, announce_ids

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
        %(errors)s::jsonb[], %(delays)s::float8[], %(started)s::timestamptz[]
    ) AS o(id, token, status, result, error, delay, started_at)
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
        -- A retry's backoff and a snooze count from the database's clock, which the claim
        -- compares scheduled_at with, never from the worker host's.
        scheduled_at = CASE WHEN o.delay IS NULL THEN j.scheduled_at
                            ELSE now() + make_interval(secs => o.delay) END,
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
    {announce_ids("done")}
)
SELECT COALESCE((SELECT array_agg(id) FROM done), '{{}}'), (SELECT count(*) FROM announced)
"""

# Give back jobs this worker holds but will not run: the attempt charged at claim time is
# refunded and they keep their place in line. Cancel wins: a job whose cancellation was
# requested ends cancelled instead. Re-queued jobs wake the workers of their queue; every
# change is announced. Each statement below picks the rows; this is what it does to them.
_GIVE_BACK_ROWS = """
    UPDATE jobqueue_job AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END,
        attempts = CASE WHEN j.cancel_requested THEN j.attempts
                        ELSE GREATEST(j.attempts - 1, 0) END,
        finished_at = CASE WHEN j.cancel_requested THEN now() END,
        errors = CASE WHEN j.cancel_requested THEN j.errors || jsonb_build_array(
            jsonb_build_object('attempt', j.attempts, 'type', 'jobqueue.exceptions.JobCancelled',
                               'message', %(cancelled)s::text,
                               'traceback', '', 'at', now(), 'worker', %(worker_name)s::text))
            ELSE j.errors END,
        worker_id = NULL, heartbeat_at = NULL, lease_token = NULL"""
_GIVEN_BACK = f"""RETURNING j.id, j.status, j.queue
), announced AS (
    {announce_ids("given")}
)
SELECT COALESCE((SELECT array_agg(id) FROM given), '{{}}'), (SELECT count(*) FROM announced),
       (SELECT count(pg_notify(%(queue_channel)s, q))
        FROM (SELECT DISTINCT queue AS q FROM given WHERE status = 'queued') AS s)
"""

# At shutdown, or for jobs claimed but never started: fenced by token.
GIVE_BACK = f"""
WITH given AS ({_GIVE_BACK_ROWS}
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS g(id, token)
    WHERE j.id = g.id AND j.lease_token = g.token AND j.status = 'running'
    {_GIVEN_BACK}"""

# After a reconnect: jobs committed as claimed by this worker whose claim's
# answer was lost with the connection (their tokens are none the worker knows).
# The worker never got them, and would never run or renew them, so they go back
# to the queue at once rather than wait out their lease. A cancel that came
# meanwhile wins, as everywhere: the job was never started, and ends cancelled.
# The rows are locked in id order first, as a cancel locks them, so the two cannot
# deadlock; a row changed while this waited is re-read before it is taken.
GIVE_BACK_UNKNOWN = f"""
WITH unknown AS (
    SELECT id FROM jobqueue_job
    WHERE worker_id = %(worker)s AND status = 'running' AND NOT (lease_token = ANY(%(known)s))
    ORDER BY id FOR UPDATE
), given AS ({_GIVE_BACK_ROWS}
    FROM unknown WHERE j.id = unknown.id
    {_GIVEN_BACK}"""


def ack(cursor: Any, *, worker: int, worker_name: str, outcomes: Sequence[tuple]) -> None:
    """Record outcomes ``(id, token, status, result_json, error_json, delay, started_at)``
    in one statement; read the ids written with ``acked(cursor)``.

    Rows are joined in ascending id order, so the ack locks them in that order.
    """
    rows = sorted(outcomes)
    ids, tokens, statuses, results, errors, delays, started = (
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
            "delays": delays,
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
            **_announced(worker_name, "cancelled: its worker stopped before it finished"),
        },
    )
    return list(cursor.fetchone()[0])


def give_back_unknown(
    cursor: Any, *, worker: int, worker_name: str, known_tokens: Sequence[int]
) -> list[int]:
    """Give back the running jobs ``worker`` holds in the database under tokens it does not
    know; returns the ids given back (or cancelled)."""
    cursor.execute(
        GIVE_BACK_UNKNOWN,
        {
            "worker": worker,
            "known": list(known_tokens),
            **_announced(worker_name, "cancelled before it ran"),
        },
    )
    return list(cursor.fetchone()[0])


def _announced(worker_name: str, cancelled: str) -> dict[str, str]:
    """The give-back statements' other parameters: who gives back, the error of a job whose
    cancel wins, and the channels."""
    return {
        "worker_name": worker_name,
        "cancelled": cancelled,
        "channel": EVENTS_CHANNEL,
        "queue_channel": QUEUE_CHANNEL,
    }
