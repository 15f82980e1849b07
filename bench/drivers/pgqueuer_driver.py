"""pgqueuer under test: asyncpg, an async no-op entrypoint, one QueueManager process.

pgqueuer runs async entrypoints only, in one process per worker; total
concurrency 2 is its own per-entrypoint ``concurrency_limit=2`` (enforced in
SQL). Finished jobs are deleted from the queue table and logged in
``pgqueuer_log``, which is where finish and start times are read.
"""

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import common
import pgqueuer
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "noop"
COUNT_DONE = "SELECT count(*) FROM pgqueuer_log WHERE status IN ('successful', 'exception')"
LAST_FINISH = (
    "SELECT extract(epoch FROM max(created)) FROM pgqueuer_log "
    "WHERE status IN ('successful', 'exception')"
)
# The log has a row per job for each of queued, picked and successful.
DELAYS = """
SELECT extract(epoch FROM min(l.created) FILTER (WHERE l.status <> 'queued')
                        - min(l.created) FILTER (WHERE l.status = 'queued')) * 1000
FROM pgqueuer_log l GROUP BY l.job_id
"""


def reset(dsn: str) -> None:
    with common.connect(dsn) as conn:
        conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics RESTART IDENTITY")


async def queries(dsn: str) -> tuple[Any, Any]:
    conn = await asyncpg.connect(dsn)
    return conn, pgqueuer.Queries(pgqueuer.AsyncpgDriver(conn))


async def bulk_enqueue(dsn: str, n: int) -> float:
    conn, q = await queries(dsn)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await q.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        return loop.time() - started
    finally:
        await conn.close()


def worker_commands(args: Any, mode: str) -> list[list[str]]:
    return [[sys.executable, __file__, "worker", "--dsn", args.dsn, "--concurrency",
             str(args.concurrency), "--mode", mode]]  # fmt: skip


async def run_worker(dsn: str, concurrency: int, mode: str) -> None:
    conn = await asyncpg.connect(dsn)
    qm = pgqueuer.QueueManager(pgqueuer.Queries(pgqueuer.AsyncpgDriver(conn)))

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: pgqueuer.Job) -> None:
        """The no-op job."""

    # At most `concurrency` jobs in hand: pgqueuer wants max_concurrent_tasks >= 2 x batch_size.
    await qm.run(
        mode=QueueExecutionMode(mode),
        dequeue_timeout=timedelta(seconds=30),
        batch_size=max(1, concurrency // 2),
        max_concurrent_tasks=concurrency,
    )


def setup(args: Any) -> dict[str, Any]:
    import subprocess

    pgq = str(Path(sys.executable).parent / "pgq")
    subprocess.run([pgq, "--pg-dsn", args.dsn, "install"], check=True, capture_output=True)
    return {"versions": {"pgqueuer": pgqueuer.__version__}}


def bulk(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    seconds = asyncio.run(bulk_enqueue(args.dsn, args.n))
    return {**common.rate(args.n, seconds), "api": "Queries.enqueue(lists)"}


def single(args: Any) -> dict[str, Any]:
    reset(args.dsn)

    async def run() -> float:
        conn, q = await queries(args.dsn)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(args.n):
            await q.enqueue(ENTRYPOINT, None)
        elapsed = loop.time() - started
        await conn.close()
        return elapsed

    return common.rate(args.n, asyncio.run(run()))


def drain(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    asyncio.run(bulk_enqueue(args.dsn, args.n))
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=worker_commands(args, "drain"),
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
    )


def latency(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    loop = asyncio.new_event_loop()
    conn, q = loop.run_until_complete(queries(args.dsn))
    try:
        return common.latency(
            args.dsn,
            n=args.n,
            interval_ms=args.interval_ms,
            worker_commands=worker_commands(args, "continuous"),
            enqueue_one=lambda: loop.run_until_complete(q.enqueue(ENTRYPOINT, None)),
            count_sql=COUNT_DONE,
            delays_sql=DELAYS,
        )
    finally:
        loop.run_until_complete(conn.close())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("worker")
        parser.add_argument("--dsn")
        parser.add_argument("--concurrency", type=int)
        parser.add_argument("--mode")
        a = parser.parse_args()
        asyncio.run(run_worker(a.dsn, a.concurrency, a.mode))
    else:
        common.run_main(
            {"setup": setup, "bulk": bulk, "single": single, "drain": drain, "latency": latency}
        )
