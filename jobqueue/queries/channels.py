"""The LISTEN/NOTIFY channels the statements announce on, and the wake-up of a queue's workers."""

from collections.abc import Sequence
from typing import Any

# Channel on which inserts of queued jobs are announced (payload: queue name).
# Sent by a statement-level trigger (see migration 0002) so that every insert
# path (backend, bulk enqueue, COPY, admin) wakes the workers.
QUEUE_CHANNEL = "jobqueue"
# Channel on which job changes are announced (payload: comma-separated ids),
# for anyone waiting on a job (the API's long-poll).
EVENTS_CHANNEL = "jobqueue_events"
# Largest number of ids in one events payload. PostgreSQL refuses a NOTIFY payload of 8000
# bytes or more, and the refusal rolls the whole statement back (the claim, the ack, the
# give-back, the cancel...). 400 ids of 19 digits and their commas make 7999 bytes.
EVENTS_CHUNK = 400


def announce_ids(rows: str) -> str:
    """SQL for the body of a CTE that announces the ids of the CTE ``rows`` on the events
    channel, EVENTS_CHUNK ids to a NOTIFY, so that no number of rows makes a payload too long.

    Every statement that changes jobs others may wait on announces through this, and must
    read the CTE (``(SELECT count(*) FROM announced)``): a CTE nobody reads is not run.
    row_number() starts at 1, so the first payload holds EVENTS_CHUNK - 1 ids.
    """
    return f"""SELECT pg_notify(%(channel)s, string_agg(id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / {EVENTS_CHUNK} AS chunk FROM {rows}) AS c
    GROUP BY chunk"""


def notify_queues(cursor: Any, queues: Sequence[str]) -> None:
    """Wake workers of ``queues`` (re-queued jobs; inserts notify by trigger)."""
    for queue in sorted(set(queues)):
        cursor.execute("SELECT pg_notify(%s, %s)", [QUEUE_CHANNEL, queue])
