"""How each job runs in a child: its execution mode, and each child's slots per mode.

- "process": alone in its child process, one job at a time. Full isolation;
  the default, and the mode for CPU-bound work.
- "thread": one of up to THREADS jobs at once on a child's thread pool, for
  sync code that blocks on I/O (HTTP, SMTP, S3).
- "async": one of up to ASYNC_SLOTS ``async def`` jobs at once on a child's
  event loop, for code that awaits I/O.

A task chooses with ``@task(execution=...)``; otherwise its queue's entry in
JOBQUEUE["QUEUE_EXECUTION"] decides; otherwise it runs in process mode. An
"async" choice for a task that is not ``async def`` runs it in thread mode
(on an event loop it could only block), and a mode with no slots on this
worker falls back to process mode.
"""

import inspect
from collections.abc import Mapping

from jobqueue.backend import load_task

CONCURRENT = ("thread", "async")


class Executions:
    def __init__(self, *, slots: Mapping[str, int], queue_modes: Mapping[str, str]) -> None:
        self.slots = {mode: slots.get(mode, 0) for mode in CONCURRENT}
        self.queue_modes = dict(queue_modes)
        self._known: dict[tuple[str, str], str] = {}  # (task, queue): mode

    def of(self, task: str, queue: str) -> str:
        """The mode a job of ``task`` in ``queue`` runs in on this worker."""
        key = (task, queue)
        mode = self._known.get(key)
        if mode is None:
            mode = self._known[key] = self._resolve(task, queue)
        return mode

    def _resolve(self, path: str, queue: str) -> str:
        try:
            task = load_task(path)
        except Exception:
            return "process"  # the child reports why it cannot be loaded
        mode = getattr(task, "execution", None) or self.queue_modes.get(queue, "process")
        if mode == "async" and not inspect.iscoroutinefunction(task.func):
            mode = "thread"
        if mode != "process" and self.slots[mode] < 1:
            mode = "process"
        return mode
