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
WAIT = "wait_io"  # W5: sleeps the seconds in its payload
# W5: no cap on jobs in hand, and the batch size that drained fastest here (100, against
# 2,171 jobs/s with the default 10).
IO_BATCH = 100
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
FIRST_START = "SELECT extract(epoch FROM min(created)) FROM pgqueuer_log WHERE status <> 'queued'"


def reset(dsn: str) -> None:
    with common.connect(dsn) as conn:
        conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics RESTART IDENTITY")


async def queries(dsn: str) -> tuple[Any, Any]:
    conn = await asyncpg.connect(dsn)
    return conn, pgqueuer.Queries(pgqueuer.AsyncpgDriver(conn))


async def bulk_enqueue(dsn: str, n: int, entrypoint: str = ENTRYPOINT,
                       payload: bytes | None = None) -> float:  # fmt: skip
    conn, q = await queries(dsn)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await q.enqueue([entrypoint] * n, [payload] * n, [0] * n)
        return loop.time() - started
    finally:
        await conn.close()


def worker_commands(args: Any, mode: str) -> list[list[str]]:
    # At most `concurrency` jobs in hand: pgqueuer wants max_concurrent_tasks >= 2 x batch_size.
    batch = max(1, args.concurrency // 2)
    return [worker_command(args.dsn, args.concurrency, batch, mode)]


def worker_command(dsn: str, max_tasks: int, batch: int, mode: str) -> list[str]:
    """One QueueManager process; ``max_tasks`` 0 is no cap."""
    return [sys.executable, __file__, "worker", "--dsn", dsn, "--max-tasks", str(max_tasks),
            "--batch", str(batch), "--mode", mode]  # fmt: skip


async def run_worker(dsn: str, max_tasks: int, batch: int, mode: str) -> None:
    conn = await asyncpg.connect(dsn)
    qm = pgqueuer.QueueManager(pgqueuer.Queries(pgqueuer.AsyncpgDriver(conn)))

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: pgqueuer.Job) -> None:
        """The no-op job."""

    @qm.entrypoint(WAIT)
    async def wait_io(job: pgqueuer.Job) -> None:
        """An I/O-bound job: wait the seconds in the payload, as for an HTTP call."""
        await asyncio.sleep(float(job.payload or 0))

    await qm.run(
        mode=QueueExecutionMode(mode),
        dequeue_timeout=timedelta(seconds=30),
        batch_size=batch,
        max_concurrent_tasks=max_tasks or None,
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


def io(args: Any) -> dict[str, Any]:
    reset(args.dsn)
    payload = str(args.wait_ms / 1000).encode()
    asyncio.run(bulk_enqueue(args.dsn, args.n, WAIT, payload))
    return common.drain(
        args.dsn,
        n=args.n,
        worker_commands=[worker_command(args.dsn, 0, IO_BATCH, "drain")] * args.processes,
        count_sql=COUNT_DONE,
        last_finish_sql=LAST_FINISH,
        first_start_sql=FIRST_START,
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
        parser.add_argument("--max-tasks", type=int)
        parser.add_argument("--batch", type=int)
        parser.add_argument("--mode")
        a = parser.parse_args()
        asyncio.run(run_worker(a.dsn, a.max_tasks, a.batch, a.mode))
    else:
        common.run_main(
            {"setup": setup, "bulk": bulk, "single": single, "drain": drain, "latency": latency,
             "io": io}
        )  # fmt: skip
