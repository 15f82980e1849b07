"""``python -m bench.profile_claim``: EXPLAIN (ANALYZE, BUFFERS) of the worker's claim statement.

With 10,000 and with 1,000,000 queued jobs, in a database of its own
(bench_profile), each plan taken inside a transaction that is rolled back
so that both claims see the same rows. The claim must stay on its one
partial index, with the same cost, however deep the queue.
"""

import argparse
import os
import subprocess
import sys

import psycopg

from bench import database
from bench.systems import DRIVERS, JOBQUEUE, ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--demand", type=int, default=202, help="jobs per claim (2 + buffer)")
    opts = parser.parse_args()
    dsn = database.recreate("bench_profile", prefix="bench_")
    env = {**os.environ, "PYTHONPATH": str(DRIVERS)}
    subprocess.run(
        [str(JOBQUEUE.python), str(DRIVERS / JOBQUEUE.driver), "setup", "--dsn", dsn],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path[:0] = [str(ROOT), str(DRIVERS)]
    import jobqueue_driver

    jobqueue_driver.django_setup(dsn)
    from jobqueue import queries

    for size in (int(s) for s in opts.sizes.split(",")):
        jobqueue_driver.reset(dsn)
        jobqueue_driver.insert_queued(dsn, size)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE jobqueue_job")
            worker = conn.execute(
                "INSERT INTO jobqueue_worker (hostname, pid, queues, concurrency, started_at, "
                "last_heartbeat) VALUES ('profile', 0, '[]', 2, now(), now()) RETURNING id"
            ).fetchone()[0]
        with psycopg.connect(dsn) as conn:
            plan = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + queries.CLAIM_ANY_QUEUE,
                {"worker": worker, "demand": opts.demand},
            ).fetchall()
            conn.rollback()
        print(f"\n## claim of {opts.demand} with {size:,} queued\n")
        print("\n".join(row[0] for row in plan))
    database.drop("bench_profile", prefix="bench_")


if __name__ == "__main__":
    main()
