"""Putting jobs in: one INSERT, COPY for bulk enqueues, unique jobs and concurrency keys."""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

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
