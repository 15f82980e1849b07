"""The django.tasks tasks used by the Django peers (imported once settings are configured)."""

import time

from django.tasks import task


@task
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the task."""


@task
def wait_io(seconds: float) -> None:
    """An I/O-bound job (W5): block ``seconds``, as a sync HTTP call would, in a worker thread."""
    time.sleep(seconds)
