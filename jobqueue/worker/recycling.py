"""When a child is replaced by a fresh one: after it was sent ``--max-jobs-per-child`` jobs, or
once its memory passes ``--max-child-memory``, as Celery's and gunicorn's workers are, so
that a leak in task code ends in a restart between jobs rather than in the OOM killer,
which would end every job the child holds at once.

A child due for recycling takes no more jobs (``Child.retiring``), finishes those it
holds, and is killed once idle (it runs nothing then); the pool forks another. Its jobs
are never interrupted, and none is charged for it.
"""

import os
from dataclasses import dataclass

from jobqueue.worker.children import Child

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recycling:
    max_jobs: int | None = None  # jobs a child is sent before it is replaced (None: no limit)
    max_memory_mb: int | None = None  # resident memory past which it is replaced

    def due(self, child: Child) -> str | None:
        """Why ``child`` should be replaced now, or None."""
        if child.allowance == 0:
            return f"it was sent its {self.max_jobs} jobs (--max-jobs-per-child)"
        if self.max_memory_mb is not None:
            resident = resident_bytes(child.process.pid)
            if resident is not None and resident > self.max_memory_mb * _MB:
                return (
                    f"it holds {resident / _MB:.0f} MB, over {self.max_memory_mb} MB "
                    "(--max-child-memory)"
                )
        return None


def resident_bytes(pid: int | None) -> int | None:
    """The resident memory of process ``pid`` (Linux's /proc), None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
