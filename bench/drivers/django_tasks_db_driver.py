"""django-tasks-db under test: Django's reference database backend and its `db_worker`.

db_worker runs one task at a time per process, so total concurrency 2 is two
`db_worker` processes (--batch: exit once the queue is empty). It has no bulk
enqueue API: the fastest public path is `enqueue()` in one transaction.
"""

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import django_peer

APP = "django_tasks_db"
BACKEND = "django_tasks_db.DatabaseBackend"
TABLE = "django_tasks_database_dbtaskresult"
COUNT_DONE = f"SELECT count(*) FROM {TABLE} WHERE status IN ('SUCCESSFUL', 'FAILED')"
LAST_FINISH = f"SELECT extract(epoch FROM max(finished_at)) FROM {TABLE}"
DELAYS = f"SELECT extract(epoch FROM started_at - enqueued_at) * 1000 FROM {TABLE} " + (
    "WHERE started_at IS NOT NULL"
)


def start(args: Any) -> Any:
    django_peer.configure(args.dsn, APP, BACKEND)
    if args.workload != "setup":
        with common.connect(args.dsn) as conn:
            conn.execute(f"TRUNCATE {TABLE} CASCADE")
    return django_peer.noop_task()


def workers(args: Any, *, batch: bool) -> list[list[str]]:
    cmd = ["db_worker", "--queue-name", "*", "--no-reload", "--no-startup-delay"]
    cmd += ["--batch"] if batch else []
    return [django_peer.worker_command(args.dsn, APP, BACKEND, *cmd)] * args.concurrency


def setup(args: Any) -> dict[str, Any]:
    start(args)
    django_peer.migrate()
    import django

    return {"versions": {"django": django.__version__}}


def bulk_enqueue(noop: Any, n: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        for _ in range(n):
            noop.enqueue()


def bulk(args: Any) -> dict[str, Any]:
    noop = start(args)
    seconds = common.timed(lambda: bulk_enqueue(noop, args.n))
    return {**common.rate(args.n, seconds), "api": "enqueue() x n in one transaction.atomic()"}


def single(args: Any) -> dict[str, Any]:
    noop = start(args)

    def run() -> None:
        for _ in range(args.n):
            noop.enqueue()

    return common.rate(args.n, common.timed(run))


def drain(args: Any) -> dict[str, Any]:
    noop = start(args)
    bulk_enqueue(noop, args.n)
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=workers(args, batch=True),
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
    )


def latency(args: Any) -> dict[str, Any]:
    noop = start(args)
    return common.latency(
        args.dsn,
        n=args.n,
        interval_ms=args.interval_ms,
        worker_commands=workers(args, batch=False),
        enqueue_one=noop.enqueue,
        count_sql=COUNT_DONE,
        delays_sql=DELAYS,
    )


if __name__ == "__main__":
    common.run_main(
        {"setup": setup, "bulk": bulk, "single": single, "drain": drain, "latency": latency}
    )
