"""purge_jobs on a large table while a worker claims: rows/s and the longest claim it delayed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jq_admin_bench \
        python bench/purge_load.py [--rows 1000000] [--batch-size 1000]

Fills DATABASE_URL (migrated first; use a scratch database) with ``--rows``
finished jobs a month old, then purges them with ``jobqueue.purge.purge``
(what ``manage.py purge_jobs`` runs) while a second connection plays a busy
worker: it enqueues a job, claims it with the worker's own CLAIM statement
and acknowledges it with ACK, over and over. It prints the purge rate, the
slowest batch, and the claim latencies seen during the purge next to those
seen before it (the longest is the longest a worker waited while it ran).
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import migrated_django  # noqa: E402


def fill(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            cursor.execute(
                """
                INSERT INTO jobqueue_job (task, queue, priority, status, args, kwargs, errors,
                    progress_message, attempts, max_attempts, cancel_requested,
                    created_at, scheduled_at, started_at, finished_at, result)
                SELECT 'demo.echo', 'q' || (i %% 5), 0,
                    (ARRAY['succeeded','succeeded','succeeded','failed','cancelled'])[1 + i %% 5],
                    '[]', '{"n": 1}',
                    CASE WHEN i %% 5 = 3 THEN '[{"attempt": 1, "type": "RuntimeError",
                        "message": "boom", "traceback": "Traceback ..."}]'::jsonb
                        ELSE '[]'::jsonb END,
                    '', 1, 1, false, t, t, t, t, '{"ok": true}'
                FROM generate_series(%s, %s) AS i,
                     LATERAL (SELECT now() - interval '30 days' - i * interval '1 s') AS x(t)
                """,
                [start + 1, start + n],
            )
        cursor.execute("VACUUM ANALYZE jobqueue_job")


class ClaimProbe(threading.Thread):
    """A worker's claim/ack loop on its own connection, timing each claim."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.phase = "before"
        self.timings: dict[str, list[float]] = {"before": [], "during": []}
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg
        from psycopg.types.json import Jsonb

        from jobqueue import queries

        with psycopg.connect(self.dsn, autocommit=True) as conn, conn.cursor() as cursor:
            worker = queries.register_worker(
                cursor, hostname="bench", pid=os.getpid(), queues=[], concurrency=1, lease=30
            )
            while not self.stop.is_set():
                cursor.execute(
                    "INSERT INTO jobqueue_job (task, queue, priority, status, args, "
                    "kwargs, errors, progress_message, attempts, max_attempts, "
                    "cancel_requested, created_at, scheduled_at) VALUES ('demo.echo', "
                    "'default', 0, 'queued', '[]', '{}', '[]', '', 0, 1, false, "
                    "now(), now())"
                )
                started = time.perf_counter()
                queries.claim(cursor, worker=worker, demand=1, queues=())
                claimed = queries.claimed(cursor)
                self.timings[self.phase].append(time.perf_counter() - started)
                outcomes = [
                    (row[0], row[-1], "succeeded", Jsonb(None), None, None, None) for row in claimed
                ]
                if outcomes:
                    queries.ack(cursor, worker=worker, worker_name="bench", outcomes=outcomes)
                time.sleep(0.002)
            queries.unregister_worker(cursor, worker=worker)


def summary(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name}: no claims"
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{name}: {len(ms)} claims, median {statistics.median(ms):.2f} ms, "
        f"p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = migrated_django(parser)
    from datetime import timedelta

    from django.db import connection

    from jobqueue.purge import PurgePlan, purge

    started = time.perf_counter()
    fill(args.rows)
    print(f"filled {args.rows} finished jobs in {time.perf_counter() - started:.1f} s")

    probe = ClaimProbe(os.environ["DATABASE_URL"])
    probe.start()
    time.sleep(3)
    probe.phase = "during"
    batches: list[float] = []
    last = time.perf_counter()

    def on_batch(n: int) -> None:
        nonlocal last
        now = time.perf_counter()
        batches.append(now - last)
        last = now

    started = time.perf_counter()
    report = purge(
        PurgePlan.retention(timedelta(days=7), batch_size=args.batch_size), on_batch=on_batch
    )
    elapsed = time.perf_counter() - started
    probe.stop.set()
    probe.join(10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobqueue_job WHERE status = 'queued'")
        left_queued = cursor.fetchone()[0]

    print(
        f"purged {report.total} jobs in {report.batches} batches of {args.batch_size} "
        f"in {elapsed:.1f} s: {report.total / elapsed:,.0f} rows/s; "
        f"slowest batch {max(batches) * 1000:.1f} ms, median "
        f"{statistics.median(batches) * 1000:.1f} ms"
    )
    print(summary("claims before the purge", probe.timings["before"]))
    print(summary("claims during the purge", probe.timings["during"]))
    print(f"queued jobs left unclaimed at the end: {left_queued}")


if __name__ == "__main__":
    main()
