"""The django.tasks no-op used by the Django peers (imported once settings are configured)."""

from django.tasks import task


@task
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the task."""
