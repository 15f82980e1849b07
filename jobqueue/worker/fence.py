"""Self-fencing: no child runs a job past the moment its worker's lease could run out.

Another worker rescues a job once its heartbeat is older than LEASE. Before
that can happen, the job must have stopped here, or it would run twice at
once. The supervisor renews the lease with every heartbeat that succeeds and
publishes the monotonic time until which the lease surely holds, minus a
margin, in memory it shares with its children (``LeaseFence``). Two guards
read it:

- the supervisor kills a busy child once that time has passed (its heartbeat
  kept failing: the database is down or cut off, or a lock blocked it);
- each child runs a watchdog thread that ends the child by itself once that
  time has passed while a job runs. This one does not need the supervisor: a
  supervisor that is frozen (SIGSTOP, a VM pause, a long stall) cannot renew
  the time, so its children stop on their own before the lease runs out.

Why the time is safe: the heartbeat's row carries the database's now() of the
transaction, which starts after the worker sent the statement; the worker
counts from the moment it sent it. So the rescue, which needs the database's
now() to pass heartbeat_at + LEASE, comes at least LEASE after the worker's
count began, and the fence falls a margin before that. Both clocks measure
intervals only (the database's own clock on one side, CLOCK_MONOTONIC, which
is system-wide on Linux, on the other); a clock stepped on the database
server, or a whole host frozen with its children for longer than the margin
at the very moment the fence falls, is outside what this covers.
"""

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import RawValue

logger = logging.getLogger("jobqueue.worker")

# A child that fenced itself exits with this code, so its supervisor can say why.
EXIT_FENCED = 86
# The watchdog's look at an expired lease while the child is idle: a job sent
# to it just then is stopped within this long.
_IDLE_CHECK = 0.2
_MAX_SLEEP = 1.0


def fence_margin(lease: float) -> float:
    """How long before the lease could run out the jobs stop: a fifth of the lease.

    It has to cover a child's reaction (its watchdog thread waits for the GIL,
    which C code may hold) and the kill; by default (LEASE 30 s, heartbeat every
    5 s) a worker whose heartbeats fail for 24 s stops its jobs, 6 s before
    another worker may rescue them.
    """
    return lease / 5


class LeaseFence:
    """The monotonic time until which this worker's jobs surely stay leased to it.

    Lives in shared memory, created by the supervisor before it forks its
    children: the supervisor writes it, the children read it. A double is
    written whole on the platforms this runs on, so no lock is needed.
    """

    def __init__(self) -> None:
        self._until = RawValue(ctypes.c_double, 0.0)

    @property
    def until(self) -> float:
        return float(self._until.value)

    def renew(self, until: float) -> None:
        self._until.value = until

    def expired(self, now: float) -> bool:
        return now >= self._until.value


def watch_in_child(fence: LeaseFence, running: Callable[[], int | None]) -> threading.Thread:
    """Start the child's watchdog: it ends the child once the lease has passed mid-job.

    ``running`` tells which job the child is running now (None between jobs).
    The child exits at once with EXIT_FENCED: the job's outcome is unknown, and
    its rescue (or its own worker, once its heartbeat succeeds again) records it.
    """

    def watch() -> None:
        try:
            while True:
                remaining = fence.until - time.monotonic()
                if remaining > 0:
                    time.sleep(min(remaining, _MAX_SLEEP))
                    continue
                job_id = running()
                if job_id is not None:
                    logger.error("job %s: lease about to run out; this child stops itself", job_id)
                    break
                time.sleep(_IDLE_CHECK)
        except BaseException:
            # The watchdog must not die: without it the child would run on past the lease.
            # Failing (to tell what runs, or even to sleep), it fences as if a job ran.
            logger.exception("the child's lease watchdog failed; this child stops itself")
        os._exit(EXIT_FENCED)

    thread = threading.Thread(target=watch, name="jobqueue-fence", daemon=True)
    thread.start()
    return thread
