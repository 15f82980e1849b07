"""What every driver shares: the command line, timing read from the database, workers, RSS.

Only the standard library and psycopg, which every driver's environment has.
Times that matter (enqueue, start, finish) are read from the job rows, so
each system is judged by what it recorded, not by when a poll noticed it.
"""

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

# A drain that has not finished after this many seconds is reported as timed out.
DRAIN_TIMEOUT = float(os.environ.get("BENCH_DRAIN_TIMEOUT", "600"))
# Seconds an idle worker gets to start and LISTEN before the latency workload enqueues.
WORKER_WARMUP = float(os.environ.get("BENCH_WORKER_WARMUP", "3"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "workload",
        choices=[
            "setup", "bulk", "single", "drain", "latency", "depth", "bloat", "api", "io",
            "io_threads", "worker", "limit_concurrency", "limit_rate",
        ],
    )  # fmt: skip
    parser.add_argument("--dsn", required=True)
    parser.add_argument("-n", type=int, default=0, help="jobs")
    parser.add_argument("--queued", type=int, default=0, help="depth: jobs queued behind")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=int, default=10, help="api: seconds of load per route")
    parser.add_argument("--wait-ms", type=int, default=100, help="io: each job's wait")
    parser.add_argument("--processes", type=int, default=2, help="io: worker processes")
    parser.add_argument("--slots", type=int, default=500, help="io: async jobs per process")
    parser.add_argument("--threads", type=int, default=100, help="io: threads per process")
    parser.add_argument("--limit", type=int, default=2, help="limit_*: the queue's limit")
    return parser.parse_args(argv)


def emit(result: dict[str, Any]) -> None:
    """The driver's one line of output, which the harness parses."""
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_main(handlers: dict[str, Callable[[argparse.Namespace], dict[str, Any]]]) -> None:
    """Dispatch to the handler for the workload and print its result (or the error)."""
    args = parse_args()
    handler = handlers.get(args.workload)
    if handler is None:
        emit({"error": f"workload {args.workload!r} not supported"})
        return
    try:
        emit(handler(args))
    except Exception as e:  # reported to the harness, which shows it in the table
        traceback.print_exc()
        emit({"error": f"{type(e).__name__}: {e}"[:300]})
        sys.exit(1)


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True)


def db_now(dsn: str) -> float:
    """The server's clock as epoch seconds: the start of a measured interval."""
    with connect(dsn) as conn:
        return float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])


def scalar(dsn: str, sql: str, params: Sequence[Any] = ()) -> Any:
    with connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": ordered[-1], "n": len(ordered)}


# --------------------------------------------------------------------- workers
def start_workers(commands: Sequence[Sequence[str]], env: dict[str, str] | None = None) -> list:
    """Start worker processes, each in its own process group so that stop() reaches its children."""
    full_env = {**os.environ, **(env or {})}
    procs = []
    for cmd in commands:
        # stderr to a file, not a pipe: a chatty worker would block on a full pipe.
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            list(cmd), env=full_env, stdout=log, stderr=log, start_new_session=True
        )
        proc.log = log  # type: ignore[attr-defined]
        procs.append(proc)
    return procs


def stop_workers(procs: Sequence[subprocess.Popen], timeout: float = 10) -> None:
    """SIGTERM each worker's process group, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=5)
    for proc in procs:  # forked children that outlived their parent
        _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)


def worker_errors(procs: Sequence[subprocess.Popen]) -> str:
    """The tail of a failed worker's stderr, for the error message."""
    tails = []
    for proc in procs:
        if proc.poll() is not None and proc.returncode not in (0, -signal.SIGTERM):
            proc.log.seek(0)  # type: ignore[attr-defined]
            err = proc.log.read().decode(errors="replace")  # type: ignore[attr-defined]
            tails.append(f"exit {proc.returncode}: {err.strip()[-400:]}")
    return "; ".join(tails)


def rss_tree_mb(pid: int) -> dict[str, float]:
    """Resident memory in MB of ``pid`` and its descendants, keyed by role and pid."""
    out: dict[str, float] = {}

    def walk(p: int, depth: int) -> None:
        rss = _rss_kb(p)
        if rss is None:
            return
        out[f"{'main' if depth == 0 else 'child'}:{p}"] = rss / 1024
        for child in _children(p):
            walk(child, depth + 1)

    walk(pid, 0)
    return out


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def wait_finished(
    dsn: str,
    procs: Sequence[subprocess.Popen],
    *,
    count_sql: str,
    expected: int,
    timeout: float = DRAIN_TIMEOUT,
) -> dict[str, Any]:
    """Poll until ``count_sql`` reaches ``expected``, sampling the workers' RSS meanwhile.

    Returns the peak RSS (MB) seen per process, summed into ``rss_total_mb``.
    Raises TimeoutError, or RuntimeError if every worker died first.
    """
    deadline = time.monotonic() + timeout
    peak: dict[str, float] = {}
    with connect(dsn) as conn:
        while True:
            for proc in procs:
                for key, mb in rss_tree_mb(proc.pid).items():
                    peak[key] = max(peak.get(key, 0.0), mb)
            done = conn.execute(count_sql).fetchone()[0]
            if done >= expected:
                break
            if all(p.poll() is not None for p in procs):
                done = conn.execute(count_sql).fetchone()[0]
                if done >= expected:
                    break
                raise RuntimeError(
                    f"workers exited with {done}/{expected} done: {worker_errors(procs)}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done}/{expected} finished after {timeout:.0f} s")
            time.sleep(0.1)
    mains = [v for k, v in peak.items() if k.startswith("main")]
    kids = [v for k, v in peak.items() if k.startswith("child")]
    return {
        "rss_total_mb": round(sum(peak.values()), 1),
        "rss_main_mb": [round(v, 1) for v in mains],
        "rss_children_mb": [round(v, 1) for v in kids],
    }


def drain(
    dsn: str,
    *,
    n: int,
    worker_commands: Sequence[Sequence[str]],
    count_sql: str,
    last_finish_sql: str,
    first_start_sql: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start the workers on ``n`` queued jobs; jobs/s from worker start to the last finish row.

    With ``first_start_sql`` (the first job's start, read from the rows), the rate
    runs from there instead, and the rate from worker start is kept beside it: in
    a drain that lasts under a second, the workers' start-up would set the figure
    rather than how many jobs they run at once.
    """
    started = db_now(dsn)
    procs = start_workers(worker_commands, env)
    try:
        memory = wait_finished(dsn, procs, count_sql=count_sql, expected=n)
    finally:
        stop_workers(procs)
    finished = float(scalar(dsn, last_finish_sql))
    elapsed = finished - started
    result = {"value": n / elapsed, "unit": "jobs/s", "seconds": elapsed, **memory}
    if first_start_sql is None:
        return result
    running = finished - float(scalar(dsn, first_start_sql))
    return {
        **result,
        "value": n / running,
        "seconds": running,
        "from_worker_start": {"value": n / elapsed, "seconds": elapsed},
    }


def latency(
    dsn: str,
    *,
    n: int,
    interval_ms: float,
    worker_commands: Sequence[Sequence[str]],
    enqueue_one: Callable[[], None],
    count_sql: str,
    delays_sql: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An idle worker; ``n`` single enqueues ``interval_ms`` apart; start minus enqueue, in ms.

    Starts with a CHECKPOINT, so that no system's measurement shares the disk
    with the flushing of what the workloads before it wrote.
    """
    with connect(dsn) as conn:
        conn.execute("CHECKPOINT")
    procs = start_workers(worker_commands, env)
    try:
        time.sleep(WORKER_WARMUP)
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"worker exited while idle: {worker_errors(procs)}")
        next_at = time.monotonic()
        for _ in range(n):
            enqueue_one()
            next_at += interval_ms / 1000
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_finished(dsn, procs, count_sql=count_sql, expected=n, timeout=60)
    finally:
        stop_workers(procs)
    with connect(dsn) as conn:
        delays = [float(r[0]) for r in conn.execute(delays_sql).fetchall()]
    if len(delays) < n:
        raise RuntimeError(f"only {len(delays)} of {n} jobs have start and enqueue times")
    return {"unit": "ms", **percentiles(delays)}


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def rate(n: int, seconds: float) -> dict[str, Any]:
    return {"value": n / seconds, "unit": "jobs/s", "seconds": seconds}
