"""Pausing and resuming queues: kept in the database, honoured by every worker's claim.

A pause holds from the moment ``pause()`` returns: it commits only once every
claim that might have missed it has committed (queries.PAUSE_LOCK), and every
claim after reads it. Jobs already running finish; enqueuing still works. The
admin's health page, the API and ``manage.py queues`` all come here.
"""

from django.db import connections, router, transaction

from jobqueue import queries
from jobqueue.models import QueuePause


def pause(queue: str, *, by: str = "") -> bool:
    """Pause ``queue``; False if it was paused already."""
    database = router.db_for_write(QueuePause)
    with transaction.atomic(using=database), connections[database].cursor() as cursor:
        return queries.pause_queue(cursor, queue, by)


def resume(queue: str) -> bool:
    """Resume ``queue`` and wake its workers; False if it was not paused."""
    database = router.db_for_write(QueuePause)
    with connections[database].cursor() as cursor:
        return queries.resume_queue(cursor, queue)


def paused() -> dict[str, QueuePause]:
    """The paused queues by name."""
    return {p.queue: p for p in QueuePause.objects.all()}
