"""What one progress() update costs as a job's arguments grow: WAL bytes, time, HOT updates.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jq_progress_bench \
        python bench/progress_cost.py [--updates 2000]

For each argument size it creates one running job whose args hold a string
of that size, then sends ``--updates`` progress updates with the worker's own
PROGRESS statement (jobqueue/queries/lease.py) over one autocommit connection, as a task's
progress() calls do. It prints per update: the WAL written (an update that
copied the payload would show as WAL growing with the size), the mean time,
and the share of HOT updates (no index entry written). PostgreSQL stores
values over about 2 kB out of line (TOAST), and an update that does not
change them copies only their pointer; a HOT update's WAL record leaves out
what the new row shares with the old. A checkpoint during a run adds full
page images to the WAL figure: run it twice.
"""

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import migrated_django  # noqa: E402

SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)


def measure(conn, size: int, updates: int) -> dict[str, float]:
    from jobqueue import queries

    job_id = conn.execute(
        "INSERT INTO jobqueue_job (task, queue, priority, status, args, kwargs, errors, "
        "progress_message, attempts, max_attempts, cancel_requested, created_at, scheduled_at, "
        "started_at, lease_token) VALUES ('demo.echo', 'default', 0, 'running', %s, '{}', '[]', "
        "'', 1, 1, false, now(), now(), now(), 1) RETURNING id",
        [json.dumps([secrets.token_hex(size // 2)])],  # random: no compression hides it
    ).fetchone()[0]
    stats = (
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobqueue_job'"
    )
    conn.execute("SELECT pg_stat_force_next_flush()")
    upd0, hot0 = conn.execute(stats).fetchone()
    lsn0 = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    started = time.perf_counter()
    with conn.cursor() as cursor:
        for i in range(updates):
            queries.report_progress(
                cursor,
                job_id=job_id,
                token=1,
                percent=100 * i / updates,
                message=f"step {i} of {updates}",
            )
    elapsed = time.perf_counter() - started
    wal = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [lsn0]
    ).fetchone()[0]
    conn.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(0.6)  # let the statistics collector catch up
    upd1, hot1 = conn.execute(stats).fetchone()
    conn.execute("DELETE FROM jobqueue_job WHERE id = %s", [job_id])
    return {
        "wal_bytes": float(wal) / updates,
        "ms": 1000 * elapsed / updates,
        "hot_share": (hot1 - hot0) / max(1, upd1 - upd0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2000)
    args = migrated_django(parser)
    from jobqueue.db import connect

    print(f"{args.updates} progress updates per size, one autocommit connection")
    print(f"{'args size':>10} | {'WAL per update':>14} | {'time per update':>15} | HOT updates")
    with connect() as conn:
        for size in SIZES:
            r = measure(conn, size, args.updates)
            print(
                f"{size:>9,}B | {r['wal_bytes']:>12,.0f} B | {r['ms']:>12.3f} ms | "
                f"{100 * r['hot_share']:.0f}%"
            )


if __name__ == "__main__":
    main()
