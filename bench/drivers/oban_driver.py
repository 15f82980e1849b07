"""Oban (the Python port) under test: one Oban instance with `queues={"default": 2}`.

Oban is asyncio throughout; total concurrency 2 is its queue limit of 2 in
one process, as its docs configure queues. It has no burst mode, so the
harness stops the worker once every job is completed. Its timestamps are
UTC without a time zone, which ``extract(epoch ...)`` reads as UTC.
"""

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import oban
from oban import Oban, job
from psycopg_pool import AsyncConnectionPool

COUNT_DONE = "SELECT count(*) FROM oban_jobs WHERE state IN ('completed', 'discarded')"
LAST_FINISH = "SELECT extract(epoch FROM max(completed_at)) FROM oban_jobs"
FIRST_START = "SELECT extract(epoch FROM min(attempted_at)) FROM oban_jobs"
DELAYS = (
    "SELECT extract(epoch FROM attempted_at - inserted_at) * 1000 FROM oban_jobs "
    "WHERE attempted_at IS NOT NULL"
)


@job(queue="default", max_attempts=1)
def noop() -> None:
    """The no-op job."""


@job(queue="default", max_attempts=1)
async def wait_io(seconds: float) -> None:
    """An I/O-bound job: wait, as for an HTTP call (async: up to the queue's limit at once)."""
    await asyncio.sleep(seconds)


def me() -> Any:
    """This module under its own name, so that workers find the job by the same name."""
    return importlib.import_module("oban_driver")


async def pool(dsn: str) -> AsyncConnectionPool:
    p = AsyncConnectionPool(conninfo=dsn, open=False, min_size=1, max_size=4)
    await p.open()
    return p


def reset(dsn: str) -> None:
    with common.connect(dsn) as conn:
        conn.execute("TRUNCATE oban_jobs RESTART IDENTITY")


async def bulk_enqueue(dsn: str, n: int, task: str = "noop", **kwargs: Any) -> float:
    p = await pool(dsn)
    try:
        async with Oban(pool=p) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await client.enqueue_many([getattr(me(), task).new(**kwargs) for _ in range(n)])
            return loop.time() - started
    finally:
        await p.close()


def worker_command(dsn: str, limit: int) -> list[str]:
    """One Oban process running the default queue with ``limit`` jobs at once."""
    return [sys.executable, __file__, "worker", "--dsn", dsn, "--concurrency", str(limit)]


def worker_commands(args: Any) -> list[list[str]]:
    return [worker_command(args.dsn, args.concurrency)]


async def run_worker(dsn: str, concurrency: int) -> None:
    me()  # register the job under its importable name
    p = await pool(dsn)
    async with Oban(pool=p, queues={"default": concurrency}):
        await asyncio.Event().wait()  # until SIGTERM


def setup(args: Any) -> dict[str, Any]:
    from oban.schema import install

    async def run() -> None:
        p = await pool(args.dsn)
        await install(p)
        await p.close()

    asyncio.run(run())
    return {"versions": {"oban": getattr(oban, "__version__", "?")}}


def bulk(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    seconds = asyncio.run(bulk_enqueue(args.dsn, args.n))
    return {**common.rate(args.n, seconds), "api": "Oban.enqueue_many"}


def single(args: Any) -> dict[str, Any]:
    reset(args.dsn)

    async def run() -> float:
        p = await pool(args.dsn)
        async with Oban(pool=p) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(args.n):
                await client.enqueue(me().noop.new())
            elapsed = loop.time() - started
        await p.close()
        return elapsed

    return common.rate(args.n, asyncio.run(run()))


def drain(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    asyncio.run(bulk_enqueue(args.dsn, args.n))
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=worker_commands(args),
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
    )


def io(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    asyncio.run(bulk_enqueue(args.dsn, args.n, "wait_io", seconds=args.wait_ms / 1000))
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=[worker_command(args.dsn, args.slots)] * args.processes,
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
        first_start_sql=FIRST_START,
    )


def latency(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    loop = asyncio.new_event_loop()
    p = loop.run_until_complete(pool(args.dsn))
    client = loop.run_until_complete(Oban(pool=p).start())
    try:
        return common.latency(
            args.dsn,
            n=args.n,
            interval_ms=args.interval_ms,
            worker_commands=worker_commands(args),
            enqueue_one=lambda: loop.run_until_complete(client.enqueue(me().noop.new())),
            count_sql=COUNT_DONE,
            delays_sql=DELAYS,
        )
    finally:
        loop.run_until_complete(client.stop())
        loop.run_until_complete(p.close())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(run_worker(sys.argv[3], int(sys.argv[5])))
    else:
        common.run_main(
            {"setup": setup, "bulk": bulk, "single": single, "drain": drain, "latency": latency,
             "io": io}
        )  # fmt: skip
