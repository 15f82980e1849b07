"""Procrastinate under test, in its own venv: a sync no-op task on the psycopg connector.

Workers are `procrastinate worker` processes, one per unit of concurrency:
Procrastinate's concurrency is asyncio in-process and its docs advise against
it for synchronous tasks, so total concurrency 2 is two processes of 1.
"""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import procrastinate

MODULE = "procrastinate_driver"
COUNT_DONE = (
    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('succeeded', 'failed', 'aborted')"
)
LAST_FINISH = (
    "SELECT extract(epoch FROM max(at)) FROM procrastinate_events "
    "WHERE type IN ('succeeded', 'failed')"
)
FIRST_START = "SELECT extract(epoch FROM min(at)) FROM procrastinate_events WHERE type = 'started'"
DELAYS = """
SELECT extract(epoch FROM s.at - d.at) * 1000
FROM procrastinate_events d JOIN procrastinate_events s ON s.job_id = d.job_id
WHERE d.type = 'deferred' AND s.type = 'started'
"""


def make_app(dsn: str) -> procrastinate.App:
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))


def load(dsn: str) -> Any:
    """This file imported under its own name with its app on ``dsn``: the app workers load."""
    import importlib

    os.environ["BENCH_DSN"] = dsn
    return importlib.import_module(MODULE)


# The app that the worker CLI loads with --app; its DSN comes from the environment.
app = make_app(os.environ.get("BENCH_DSN", ""))


@app.task(name="noop", queue="default")
def noop() -> None:
    """The no-op job."""


@app.task(name="wait_io", queue="default")
async def wait_io(seconds: float) -> None:
    """An I/O-bound job: wait, as for an HTTP call (async: the worker's --concurrency applies)."""
    await asyncio.sleep(seconds)


def reset(dsn: str) -> None:
    with common.connect(dsn) as conn:
        conn.execute(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers "
            "RESTART IDENTITY CASCADE"
        )


def worker_commands(n: int, *, wait: bool, concurrency: int = 1) -> list[list[str]]:
    """n worker processes, each running up to ``concurrency`` async jobs at once."""
    cmd = [sys.executable, "-m", "procrastinate", f"--app={MODULE}.app", "worker"]
    cmd += ["--concurrency", str(concurrency), "--wait" if wait else "--one-shot"]
    return [cmd] * n


def env(dsn: str) -> dict[str, str]:
    return {"BENCH_DSN": dsn, "PYTHONPATH": str(Path(__file__).resolve().parent)}


def bulk_defer(dsn: str, n: int, task: str = "noop", **kwargs: Any) -> None:
    mod = load(dsn)
    with mod.app.open():
        getattr(mod, task).batch_defer(*[kwargs for _ in range(n)])


def setup(args: Any) -> dict[str, Any]:
    app_ = make_app(args.dsn)

    async def apply() -> None:
        async with app_.open_async():
            await app_.schema_manager.apply_schema_async()

    asyncio.run(apply())
    return {}


def bulk(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    return {**common.rate(args.n, common.timed(lambda: bulk_defer(args.dsn, args.n))),
            "api": "task.batch_defer"}  # fmt: skip


def single(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    mod = load(args.dsn)

    def run() -> None:
        with mod.app.open():
            for _ in range(args.n):
                mod.noop.defer()

    return common.rate(args.n, common.timed(run))


def drain(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    bulk_defer(args.dsn, args.n)
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=worker_commands(args.concurrency, wait=False),
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
        env=env(args.dsn),
    )


def io(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    bulk_defer(args.dsn, args.n, "wait_io", seconds=args.wait_ms / 1000)
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=worker_commands(args.processes, wait=False, concurrency=args.slots),
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
        first_start_sql=FIRST_START,
        env=env(args.dsn),
    )


def latency(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    mod = load(args.dsn)
    with mod.app.open():
        return common.latency(
            args.dsn,
            n=args.n,
            interval_ms=args.interval_ms,
            worker_commands=worker_commands(args.concurrency, wait=True),
            enqueue_one=mod.noop.defer,
            count_sql=COUNT_DONE,
            delays_sql=DELAYS,
            env=env(args.dsn),
        )


if __name__ == "__main__":
    versions = {"procrastinate": procrastinate.__version__}
    common.run_main(
        {
            "setup": lambda a: {**setup(a), "versions": versions},
            "bulk": bulk,
            "single": single,
            "drain": drain,
            "latency": latency,
            "io": io,
        }
    )
