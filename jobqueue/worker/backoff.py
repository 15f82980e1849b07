"""How long a failed job waits before its next attempt."""

import random
from collections.abc import Callable


def retry_delay(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with equal jitter: base * 2**(attempt-1), capped, half of it random.

    The random half spreads retries of jobs that failed together (a dependency
    that went down) so that they do not all come back at the same moment.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return ceiling / 2 + rng() * ceiling / 2
