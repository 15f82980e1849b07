"""The systems under test: jobqueue and each peer, with how each is installed and run.

Every peer is installed from PyPI into its own virtual environment and
driven by its own script in bench/drivers/, so that no peer's dependencies
meet ours. ``config`` says, for the report, how each is set up: each as its
documentation recommends for production, with total concurrency 2 for the drain,
and for I/O-bound jobs (W5: ``io``) at its documented setting for such work with
two worker processes.
"""

from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DRIVERS = BENCH / "drivers"
VENVS = BENCH / ".venvs"


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    name: str
    driver: str  # file in bench/drivers/
    packages: tuple[str, ...] = ()  # pip requirements; () for jobqueue (our own .venv)
    versions_of: tuple[str, ...] = ()  # distributions whose versions the report shows
    config: str = ""

    @property
    def is_ours(self) -> bool:
        return not self.packages

    @property
    def venv(self) -> Path:
        return ROOT / ".venv" if self.is_ours else VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def database(self) -> str:
        return "bench_" + self.name.replace("-", "_")


JOBQUEUE = System(
    name="jobqueue",
    driver="jobqueue_driver.py",
    versions_of=("django", "psycopg"),
    config="`manage.py runworker --concurrency 2 --burst` (one supervisor, 2 forked children); "
    "bulk: `JobQueueBackend.enqueue_many` (COPY); single: `demo.echo.enqueue()`; "
    "I/O-bound: `runworker --concurrency 2 --async-slots 500 --burst` with `demo.wait` "
    '(`async def`, `execution="async"`), and as its own row `--threads 100` with `demo.fetch` '
    '(sync, `execution="thread"`)',
)

PEERS = [
    System(
        name="procrastinate",
        driver="procrastinate_driver.py",
        packages=("procrastinate", "psycopg[binary]"),
        versions_of=("procrastinate", "psycopg"),
        config="2 x `procrastinate worker --concurrency 1 --one-shot` (its docs: no in-process "
        "concurrency for sync tasks, scale with processes), LISTEN/NOTIFY on, sync no-op task; "
        "bulk: `task.batch_defer`; single: `task.defer`; I/O-bound: an `async def` task, "
        "2 x `procrastinate worker --concurrency 500 --one-shot`",
    ),
    System(
        name="django-tasks-db",
        driver="django_tasks_db_driver.py",
        packages=("django-tasks-db", "django>=6.0", "psycopg[binary]"),
        versions_of=("django-tasks-db", "django"),
        config="2 x `manage.py db_worker --batch --no-reload` (it runs one task at a time per "
        "process), default 1 s poll; bulk: no bulk API, so `enqueue()` in a loop inside one "
        "`transaction.atomic()`; single: `task.enqueue()`; I/O-bound: the same 2 x "
        "`db_worker` (it has no concurrency setting), a sync task",
    ),
    System(
        name="pgqueuer",
        driver="pgqueuer_driver.py",
        packages=("pgqueuer", "asyncpg", "psycopg[binary]"),
        versions_of=("pgqueuer", "asyncpg"),
        config="one `QueueManager` process on asyncpg, async no-op entrypoint, `mode=drain`, "
        "`max_concurrent_tasks=2` with `batch_size=1` (it requires max >= 2 x batch; its "
        "per-entrypoint `concurrency_limit=2` instead drained at ~18 jobs/s here); bulk: "
        "`Queries.enqueue` with lists; single: `Queries.enqueue` per job; I/O-bound: 2 "
        "`QueueManager` processes, async entrypoint, no cap (`max_concurrent_tasks=None`), "
        "`batch_size=100` (2,171 jobs/s with its default 10 in one process, 3,542 with 100)",
    ),
    System(
        name="oban",
        driver="oban_driver.py",
        packages=("oban", "psycopg[binary]"),
        versions_of=("oban", "psycopg"),
        config="one `Oban` process, `queues={'default': 2}`, sync no-op `@job`; "
        "bulk: `Oban.enqueue_many`; single: `job.enqueue()`; I/O-bound: 2 `Oban` processes, "
        "`queues={'default': 500}`, `async def` `@job`",
    ),
    System(
        name="django-ox",
        driver="django_ox_driver.py",
        packages=("django-ox", "django>=6.0", "psycopg[binary]"),
        versions_of=("django-ox", "django"),
        config="2 x `manage.py ox_worker --concurrency 1 --batch` (its docs: "
        "`--processes N --concurrency 1` for CPU-bound work; `--processes` refuses `--batch`, "
        "so two processes are started directly); bulk: "
        "`django_ox.bulk.enqueue_many`; single: `task.enqueue()`; I/O-bound: its thread "
        "pool, 2 x `ox_worker --concurrency 100 --batch`, a sync task",
    ),
]

SYSTEMS = [JOBQUEUE, *PEERS]
BY_NAME = {s.name: s for s in SYSTEMS}
