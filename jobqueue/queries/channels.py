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
# Largest number of ids in one events payload (NOTIFY payloads stop at 8000 bytes).
EVENTS_CHUNK = 400


def notify_queues(cursor: Any, queues: Sequence[str]) -> None:
    """Wake workers of ``queues`` (re-queued jobs; inserts notify by trigger)."""
    for queue in sorted(set(queues)):
        cursor.execute("SELECT pg_notify(%s, %s)", [QUEUE_CHANNEL, queue])
