"""django-ox under test: its django.tasks backend and its `ox_worker` command.

Its docs advise `--processes N --concurrency 1` for CPU-bound work, so total
concurrency 2 is two `ox_worker --concurrency 1` processes (what
`--processes 2` starts, but that refuses `--batch`, which exits once the
queue is empty). Bulk enqueue is its `django_ox.bulk.enqueue_many`.
"""

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import django_peer


def bulk_enqueue(task: Any, n: int, args: tuple[Any, ...] = ()) -> None:
    from django_ox.bulk import enqueue_many

    enqueue_many(task, [(args, {})] * n)


PEER = django_peer.DjangoPeer(
    app="django_ox",
    backend="django_ox.backend.OxBackend",
    table="django_ox_oxtask",
    done_statuses=("SUCCESSFUL", "FAILED", "LOST"),
    # Separate processes rather than --processes N, which refuses --batch; --concurrency is
    # the size of each process's thread pool, its setting for I/O-bound tasks.
    worker=lambda batch, threads: (
        ["ox_worker", "--concurrency", str(threads)] + (["--batch"] if batch else [])
    ),
    bulk_enqueue=bulk_enqueue,
    bulk_api="django_ox.bulk.enqueue_many",
)

if __name__ == "__main__":
    PEER.run_main()
