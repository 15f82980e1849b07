"""What the global limits cost a claim: each claim statement timed alone, on real PostgreSQL.

    DATABASE_URL=postgres://... python bench/claim_cost.py [--backlog 20000] [--claims 150]

The database must be migrated and is emptied first. For each way of claiming, a backlog of
no-op jobs in one unlimited queue is claimed 100 at a time by one connection (autocommit,
prepared statements as the worker's), and the median time of a statement is printed:

- plain: the claim while no limit is in play (queries.CLAIM_PLAIN_*), and its probe;
- within limits: LOCK_LIMITS and the claim within limits, with no limit row, then with
  a limited queue beside the unlimited one (its row exists; it has no jobs);
- held back: the same limited queue with --held-back jobs queued ahead of the unlimited
  ones in claim order (a rate-limited queue's backlog), which the claim of unlimited jobs
  walks past.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

FILL = """
INSERT INTO jobqueue_job (task, queue, priority, max_attempts, timeout_seconds, created_at,
                          scheduled_at, args, kwargs, status, errors, progress_message,
                          attempts, cancel_requested)
SELECT 'demo.echo', %s, 0, 3, 600, now(), now() - %s * interval '1 hour', '[]', '{}', 'queued',
       '[]', '', 0, false
FROM generate_series(1, %s)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--claims", type=int, default=150)
    parser.add_argument("--held-back", type=int, default=50_000)
    opts = parser.parse_args()
    import django

    django.setup()
    from jobqueue import queries
    from jobqueue.scheduling.limits import START_SLACK, QueueLimitSpec

    db = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    cur = db.cursor()
    params = {
        "worker": None, "demand": 100, "free": 2, "soon": 100, "slack": START_SLACK,
        "after": "", "walk": queries.KEY_WALK, "channel": "claim_cost",
    }  # fmt: skip

    def timed(label: str, sql: str, held_back: int = 0) -> None:
        cur.execute("TRUNCATE jobqueue_job CASCADE")
        cur.execute(FILL, ("default", 0, opts.backlog))
        cur.execute(FILL, ("other", 1, held_back))  # due an hour earlier: ahead in claim order
        cur.execute("VACUUM ANALYZE jobqueue_job")
        times = []
        for _ in range(opts.claims):
            started = time.perf_counter()
            cur.execute(sql, params)
            cur.fetchall()
            times.append(time.perf_counter() - started)
        warm = times[10:]  # after psycopg has prepared the statement
        print(f"{label:<48} median {statistics.median(warm) * 1000:6.3f} ms")

    cur.execute("DELETE FROM jobqueue_queuelimit")
    timed("plain claim of 100", queries.CLAIM_PLAIN_ANY_QUEUE)
    timed("plain: its probe", queries.PROBE_LIMITS_ANY_QUEUE)
    timed("within limits, no limit row: LOCK_LIMITS", queries.LOCK_LIMITS_ANY_QUEUE)
    timed("within limits, no limit row: claim of 100", queries.CLAIM_ANY_QUEUE)
    queries.sync_limits(cur, [QueueLimitSpec("other", concurrency=2)])
    timed("a limited queue beside: LOCK_LIMITS", queries.LOCK_LIMITS_ANY_QUEUE)
    timed("a limited queue beside: claim of 100", queries.CLAIM_ANY_QUEUE)
    held = f"{opts.held_back:,} held back ahead"
    timed(f"{held}: LOCK_LIMITS", queries.LOCK_LIMITS_ANY_QUEUE, opts.held_back)
    timed(f"{held}: claim of 100", queries.CLAIM_ANY_QUEUE, opts.held_back)
    cur.execute("DELETE FROM jobqueue_queuelimit")
    cur.execute("TRUNCATE jobqueue_job CASCADE")


if __name__ == "__main__":
    main()
