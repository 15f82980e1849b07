"""django-tasks-db under test: Django's reference database backend and its `db_worker`.

db_worker runs one task at a time per process, so total concurrency 2 is two
`db_worker` processes (--batch: exit once the queue is empty). It has no bulk
enqueue API: the fastest public path is `enqueue()` in one transaction.
"""

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import django_peer


def bulk_enqueue(task: Any, n: int, args: tuple[Any, ...] = ()) -> None:
    from django.db import transaction

    with transaction.atomic():
        for _ in range(n):
            task.enqueue(*args)


PEER = django_peer.DjangoPeer(
    app="django_tasks_db",
    backend="django_tasks_db.DatabaseBackend",
    table="django_tasks_database_dbtaskresult",
    done_statuses=("SUCCESSFUL", "FAILED"),
    # It has no concurrency setting (one task at a time per process): threads go unused.
    worker=lambda batch, threads: (
        ["db_worker", "--queue-name", "*", "--no-reload", "--no-startup-delay"]
        + (["--batch"] if batch else [])
    ),
    bulk_enqueue=bulk_enqueue,
    bulk_api="enqueue() x n in one transaction.atomic()",
)

if __name__ == "__main__":
    PEER.run_main()
