"""What the worker knows of the global limits between claims (scheduling/limits.py, keys.py).

Each claim sends two statements in its pipeline: while a limit is in play, LOCK_LIMITS
then the claim within limits; while none is, a cheap probe then the plain claim of an
unlimited world (queries.CLAIM_PLAIN_*), which never takes a job a limit guards. This
keeps which one to send, and reads back what the first statement answered: whether
limits are in play, whether a limited queue or key had ready jobs (so a finished job
may have made room, and --burst must not stop), which rate-limited queues' jobs must
start by a deadline, when a rate window opens, and where the next walk over keys starts.
"""

from typing import Any

from jobqueue import queries
from jobqueue.scheduling.limits import START_SLACK


class ClaimLimits:
    def __init__(self) -> None:
        self.within = True  # the next claim goes within limits (the first one looks)
        self.held_back = False  # the last claim found ready jobs of a limited queue or key
        self.keys_after = ""  # the key the next walk over concurrency keys starts after
        self.rated: frozenset[str] = frozenset()
        self.opens_at: float | None = None  # monotonic: a rate window admits a start again

    def claim_options(self) -> dict[str, Any]:
        return {"within_limits": self.within, "keys_after": self.keys_after}

    def read(self, lock_cursor: Any, *, sent_at: float) -> bool:
        """Read the first statement's answer; True when limits just came into play, and
        the worker should claim again at once, within them."""
        if not self.within:
            self.held_back, self.rated, self.opens_at = False, frozenset(), None
            self.within = queries.limits_present(lock_cursor)
            return self.within
        locked = queries.limits_locked(lock_cursor)
        self.within = locked.present
        self.held_back = locked.any
        self.keys_after = locked.key
        self.rated = locked.rated
        self.opens_at = None if locked.opens_in is None else sent_at + max(locked.opens_in, 0.0)
        return False

    def start_by(self, sent_at: float) -> dict[str, float]:
        """The monotonic deadline by which each rate-limited queue's jobs must start: START_SLACK
        after the claim was sent, which is before the database read its clock for it."""
        return {queue: sent_at + START_SLACK for queue in self.rated}
