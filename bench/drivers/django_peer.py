"""What the two django.tasks peers share: settings from a DSN, the no-op task, the worker process.

Settings are configured in code (no project on disk), and the worker is the
peer's own management command run through ``django_peer.py worker APP ...``
so that it sees the same settings as the enqueuing side.
"""

import os
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

DRIVERS = os.path.dirname(os.path.abspath(__file__))


def configure(dsn: str, app: str, backend: str) -> None:
    """Django settings for a peer: its app installed, its backend as TASKS' default."""
    import django
    from django.conf import settings

    url = urlsplit(dsn)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", app],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.path.lstrip("/"),
                "USER": unquote(url.username or "postgres"),
                "PASSWORD": unquote(url.password or ""),
                "HOST": unquote(url.hostname or ""),
                "PORT": str(url.port or ""),
                # Persistent connections, as a production deployment would use.
                "CONN_MAX_AGE": 600,
            }
        },
        TASKS={"default": {"BACKEND": backend, "QUEUES": []}},
        LOGGING_CONFIG=None,
    )
    django.setup()


def peer_task(name: str) -> Any:
    """A task of peer_tasks.py, imported once settings exist (django.tasks checks them)."""
    import peer_tasks

    return getattr(peer_tasks, name)


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def worker_command(dsn: str, app: str, backend: str, *command: str) -> list[str]:
    """A worker process: this module configures settings and runs the peer's command."""
    return [sys.executable, os.path.join(DRIVERS, "django_peer.py"), dsn, app, backend, *command]


if __name__ == "__main__":  # django_peer.py DSN APP BACKEND COMMAND [ARGS...]
    sys.path.insert(0, DRIVERS)
    dsn_, app_, backend_, *argv = sys.argv[1:]
    configure(dsn_, app_, backend_)
    from django.core.management import call_command

    call_command(*argv)


class DjangoPeer:
    """One django.tasks peer: its app, backend, result table, worker command and bulk call.

    Both Django peers run the same workloads; only these facts differ.
    """

    def __init__(
        self,
        *,
        app: str,
        backend: str,
        table: str,
        done_statuses: tuple[str, ...],
        worker: Any,
        bulk_enqueue: Any,
        bulk_api: str,
    ) -> None:
        self.app, self.backend, self.table = app, backend, table
        # (batch: bool, threads: int) -> the worker's management command and options
        self.worker = worker
        self.bulk_enqueue = bulk_enqueue  # (task, n, args=()) -> None
        self.bulk_api = bulk_api
        statuses = ", ".join(f"'{s}'" for s in done_statuses)
        self.count_done = f"SELECT count(*) FROM {table} WHERE status IN ({statuses})"
        self.last_finish = f"SELECT extract(epoch FROM max(finished_at)) FROM {table}"
        self.first_start = f"SELECT extract(epoch FROM min(started_at)) FROM {table}"
        self.delays = (
            f"SELECT extract(epoch FROM started_at - enqueued_at) * 1000 FROM {table} "
            "WHERE started_at IS NOT NULL"
        )

    def start(self, args: Any, task: str = "noop") -> Any:
        import common

        configure(args.dsn, self.app, self.backend)
        if args.workload != "setup":
            with common.connect(args.dsn) as conn:
                conn.execute(f"TRUNCATE {self.table} CASCADE")
        return peer_task(task)

    def workers(
        self, args: Any, *, batch: bool, processes: int, threads: int = 1
    ) -> list[list[str]]:
        command = worker_command(args.dsn, self.app, self.backend, *self.worker(batch, threads))
        return [command] * processes

    def setup(self, args: Any) -> dict[str, Any]:
        self.start(args)
        migrate()
        import django

        return {"versions": {"django": django.__version__}}

    def bulk(self, args: Any) -> dict[str, Any]:
        import common

        noop = self.start(args)
        seconds = common.timed(lambda: self.bulk_enqueue(noop, args.n))
        return {**common.rate(args.n, seconds), "api": self.bulk_api}

    def single(self, args: Any) -> dict[str, Any]:
        import common

        noop = self.start(args)

        def run() -> None:
            for _ in range(args.n):
                noop.enqueue()

        return common.rate(args.n, common.timed(run))

    def drain(self, args: Any) -> dict[str, Any]:
        import common

        noop = self.start(args)
        self.bulk_enqueue(noop, args.n)
        return common.drain(
            args.dsn,
            n=args.n,
            worker_commands=self.workers(args, batch=True, processes=args.concurrency),
            count_sql=self.count_done,
            last_finish_sql=self.last_finish,
        )

    def io(self, args: Any) -> dict[str, Any]:
        """W5: jobs that block args.wait_ms each, args.processes workers of args.threads threads."""
        import common

        wait_io = self.start(args, "wait_io")
        self.bulk_enqueue(wait_io, args.n, (args.wait_ms / 1000,))
        return common.drain(
            args.dsn,
            n=args.n,
            worker_commands=self.workers(
                args, batch=True, processes=args.processes, threads=args.threads
            ),
            count_sql=self.count_done,
            last_finish_sql=self.last_finish,
            first_start_sql=self.first_start,
        )

    def latency(self, args: Any) -> dict[str, Any]:
        import common

        noop = self.start(args)
        return common.latency(
            args.dsn,
            n=args.n,
            interval_ms=args.interval_ms,
            worker_commands=self.workers(args, batch=False, processes=args.concurrency),
            enqueue_one=noop.enqueue,
            count_sql=self.count_done,
            delays_sql=self.delays,
        )

    def run_main(self) -> None:
        import common

        common.run_main(
            {
                "setup": self.setup,
                "bulk": self.bulk,
                "single": self.single,
                "drain": self.drain,
                "latency": self.latency,
                "io": self.io,
            }
        )
