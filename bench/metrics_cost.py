"""What one scrape of GET /metrics costs the database, with a long history and a deep backlog.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jq_metrics_bench \
        python bench/metrics_cost.py [--finished 1000000] [--queued 100000] [--scrapes 30]

It fills the scratch database with ``--finished`` finished jobs (spread over
the last 7 days) and ``--queued`` queued ones over 4 queues (a tenth of them
due later), plus 8 running jobs of one worker; vacuums and analyzes; then runs
the collector of /metrics (jobqueue/metrics.py) ``--scrapes`` times. It prints
the database time of one scrape (planning plus execution of its statements, by
EXPLAIN ANALYZE with per-node timing off, which would inflate it), the wall time
of the collector as the web app runs it (its round trips included), and the
plan's buffers, which show that no finished row is read.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import migrated_django  # noqa: E402

COLUMNS = (
    "task, queue, priority, status, args, kwargs, errors, progress_message, attempts, "
    "max_attempts, cancel_requested, created_at, scheduled_at, started_at, finished_at"
)


def fill(conn, finished: int, queued: int) -> None:
    conn.execute("TRUNCATE jobqueue_job, jobqueue_worker CASCADE")
    conn.execute(
        f"INSERT INTO jobqueue_job ({COLUMNS}) "
        "SELECT 'demo.echo', 'q' || (i %% 4), 0, CASE WHEN i %% 50 = 0 THEN 'failed' "
        "ELSE 'succeeded' END, '[]', '{}', '[]', '', 1, 1, false, t, t, t, t "
        "FROM generate_series(1, %s) AS i, "
        "LATERAL (SELECT now() - (i %% 604800) * interval '1 second') AS x(t)",
        [finished],
    )
    conn.execute(
        f"INSERT INTO jobqueue_job ({COLUMNS}) "
        "SELECT 'demo.echo', 'q' || (i %% 4), 0, 'queued', '[]', '{}', '[]', '', 0, 3, false, "
        "now(), now() + CASE WHEN i %% 10 = 0 THEN interval '1 hour' "
        "ELSE -(i %% 3600) * interval '1 second' END, NULL, NULL "
        "FROM generate_series(1, %s) AS i",
        [queued],
    )
    worker = conn.execute(
        "INSERT INTO jobqueue_worker (hostname, pid, queues, concurrency, started_at, "
        "last_heartbeat) VALUES ('bench', 1, '[]', 8, now(), now()) RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "UPDATE jobqueue_job SET status = 'running', started_at = now(), heartbeat_at = now(), "
        "worker_id = %s, attempts = 1 WHERE id IN (SELECT id FROM jobqueue_job "
        "WHERE status = 'queued' ORDER BY id LIMIT 8)",
        [worker],
    )
    conn.execute("VACUUM ANALYZE jobqueue_job")
    conn.execute("VACUUM ANALYZE jobqueue_worker")


def explained(conn, sql: str, params: list) -> tuple[float, int]:
    """(planning + execution ms, shared buffers touched) of one run of ``sql``."""
    plan = conn.execute(
        f"EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON) {sql}", params
    ).fetchone()[0][0]
    top = plan["Plan"]
    buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    return plan["Planning Time"] + plan["Execution Time"], buffers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = migrated_django(parser)
    from jobqueue.conf import get_settings
    from jobqueue.db import connect
    from jobqueue.metrics import BACKLOG, WORKERS, ClusterCollector

    with connect() as conn:
        started = time.perf_counter()
        fill(conn, args.finished, args.queued)
        print(
            f"filled {args.finished:,} finished and {args.queued:,} queued jobs "
            f"in {time.perf_counter() - started:.0f} s"
        )
        lease = [get_settings().LEASE]
        db_ms, buffers = [], []
        for _ in range(args.scrapes):
            backlog_ms, backlog_buffers = explained(conn, BACKLOG, [])
            workers_ms, _ = explained(conn, WORKERS, lease)
            db_ms.append(backlog_ms + workers_ms)
            buffers.append(backlog_buffers)
    collector = ClusterCollector()
    wall_ms = []
    for _ in range(args.scrapes):
        started = time.perf_counter()
        list(collector.collect())
        wall_ms.append(1000 * (time.perf_counter() - started))
    print(f"{args.scrapes} scrapes of /metrics' collector:")
    print(
        "  database time per scrape (EXPLAIN ANALYZE, TIMING OFF): "
        f"median {statistics.median(db_ms):.1f} ms, max {max(db_ms):.1f} ms"
    )
    print(
        f"  collector wall time per scrape: median {statistics.median(wall_ms):.1f} ms, "
        f"max {max(wall_ms):.1f} ms"
    )
    print(f"  shared buffers read by the backlog statement: {statistics.median(buffers):,.0f}")


if __name__ == "__main__":
    main()
