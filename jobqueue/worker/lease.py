"""The lease keeper: heartbeats, rescue of other workers' lost jobs, and self-fencing.

A job's lease is its row's heartbeat_at: renewed by the heartbeat of the worker
holding it, and expired once older than LEASE, when any live worker rescues
it. This module holds both sides:

- ``beat`` renews the worker row and exactly the jobs in hand (by id and
  fencing token), tells which of them are still ours and which were asked to
  cancel, and on success pushes the fence forward (see fence.py);
- ``rescue`` re-queues (or fails, or cancels) jobs whose lease ran out, but
  never within one LEASE of this worker's (re)connection: after an outage every
  heartbeat in the table is old, and the workers that wrote them may only now
  be coming back. Their children stopped themselves before the lease could
  run out (self-fencing), and the wait gives every one of them a full lease to
  heart-beat again before anything of theirs is taken.
"""

import logging
import time
from dataclasses import dataclass

from jobqueue import queries
from jobqueue.conf import JobQueueSettings
from jobqueue.worker import telemetry
from jobqueue.worker.fence import LeaseFence, fence_margin

logger = logging.getLogger("jobqueue.worker")


@dataclass(frozen=True, slots=True)
class Beat:
    """What a heartbeat learnt: the worker row exists, which jobs are ours, which to cancel."""

    alive: bool
    held: set[int]
    cancel: set[int]


class LeaseKeeper:
    def __init__(self, conf: JobQueueSettings, fence: LeaseFence) -> None:
        self.conf = conf
        self.fence = fence
        self.margin = fence_margin(conf.LEASE)
        now = time.monotonic()
        self.next_heartbeat = now
        self.next_rescue = now + conf.LEASE

    def connected(self, now: float) -> None:
        """A (re)connection: heart-beat at once, and rescue nothing for one lease."""
        self.next_heartbeat = now
        self.next_rescue = max(self.next_rescue, now + self.conf.LEASE)

    def beat(self, cursor: object, *, worker: int, jobs: list[tuple[int, int]]) -> Beat:
        """Renew ``worker`` and its ``(id, token)`` jobs; on success, push the fence forward."""
        sent = time.monotonic()
        alive, held, cancel = queries.heartbeat(cursor, worker=worker, jobs=jobs)
        if alive:
            self.fence.renew(sent + self.conf.LEASE - self.margin)
            self.next_heartbeat = time.monotonic() + self.conf.HEARTBEAT_INTERVAL
        return Beat(alive, held, cancel)

    def rescue(self, cursor: object) -> list[tuple]:
        """Rescue one batch of jobs whose lease ran out; returns their (id, status, queue)."""
        rescued = queries.rescue(cursor, lease=self.conf.LEASE)
        requeued = [queue for _, status, queue in rescued if status == "queued"]
        if requeued:
            queries.notify_queues(cursor, requeued)
        telemetry.rescued(rescued)
        for job_id, status, _ in rescued:
            logger.warning("rescued job %s from a lost worker: now %s", job_id, status)
        interval = max(self.conf.HEARTBEAT_INTERVAL, self.conf.LEASE / 4)
        self.next_rescue = time.monotonic() + interval
        return rescued

    def expired(self, now: float) -> bool:
        """Whether the fence has fallen: jobs in hand must not run any longer."""
        return self.fence.expired(now)
