"""The admin's pages on a large jobs table: queries per page and render time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jq_admin_bench \
        python bench/admin_load.py [--rows 1000000] [--repeat 5]

Fills DATABASE_URL (migrated first; use a scratch database) with ``--rows``
jobs (mostly finished, some failed with errors, a backlog of queued and a
few running on two workers), then requests each admin page in-process with
Django's test client as a superuser and prints, per page, the number of SQL
queries, the slowest query, and the median wall time of ``--repeat`` renders.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO jobqueue_worker (hostname, pid, queues, concurrency, started_at, "
            "last_heartbeat) VALUES ('bench-a', 1, '[]', 4, now(), now()), "
            "('bench-b', 2, '[]', 4, now(), now())"
        )
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            # Of every 100 jobs: 90 succeeded, 5 failed, 2 cancelled, 2 queued, 1 running,
            # created one a second up to now, so that the newest are the last hour's.
            cursor.execute(
                """
                INSERT INTO jobqueue_job (task, queue, priority, status, args, kwargs, errors,
                    progress_message, progress_percent, attempts, max_attempts,
                    cancel_requested, created_at, scheduled_at, started_at, finished_at,
                    heartbeat_at, worker_id, result)
                SELECT 'demo.' || (ARRAY['echo','sleep','progress','fail'])[1 + i %% 4],
                    'q' || (i %% 5), 0, s, '[]', jsonb_build_object('user_id', i %% 5000),
                    CASE WHEN s = 'failed' THEN jsonb_build_array(jsonb_build_object(
                        'attempt', 1, 'type', 'builtins.RuntimeError',
                        'message', 'disk full on node ' || (i %% 50),
                        'traceback', 'Traceback (most recent call last): ...')) ELSE '[]' END,
                    '', CASE WHEN s = 'running' THEN 50 END, 1, 3, false, t, t,
                    CASE WHEN s <> 'queued' THEN t END,
                    CASE WHEN s IN ('succeeded', 'failed', 'cancelled') THEN t + interval '2 s' END,
                    CASE WHEN s = 'running' THEN now() END,
                    CASE WHEN s = 'running' THEN (SELECT min(id) FROM jobqueue_worker) END,
                    CASE WHEN s = 'succeeded' THEN '{"ok": true}'::jsonb END
                FROM generate_series(%s, %s) AS i,
                     LATERAL (SELECT CASE
                         WHEN i %% 100 < 90 THEN 'succeeded' WHEN i %% 100 < 95 THEN 'failed'
                         WHEN i %% 100 < 97 THEN 'cancelled' WHEN i %% 100 < 99 THEN 'queued'
                         ELSE 'running' END) AS st(s),
                     LATERAL (SELECT now() - (%s - i) * interval '1 s') AS x(t)
                """,
                [start + 1, start + n, rows],
            )
        cursor.execute("VACUUM ANALYZE jobqueue_job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        parser.error("set DATABASE_URL to a scratch database")
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from jobqueue.models import Job

    setup_test_environment()
    call_command("migrate", verbosity=0)
    if Job.objects.count() < args.rows:  # reuse a filled table across runs
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE jobqueue_job, jobqueue_worker CASCADE")
        started = time.perf_counter()
        fill(args.rows)
        print(f"filled {args.rows} jobs in {time.perf_counter() - started:.1f} s")
    user, _ = User.objects.get_or_create(username="bench-admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    newest = Job.objects.order_by("-id").values_list("id", flat=True).first()
    failed = Job.objects.filter(status="failed").order_by("-id").values_list("id", flat=True)[0]
    year = Job.objects.order_by("-id").values_list("created_at", flat=True)[0].year
    pages = {
        "changelist": "/admin/jobqueue/job/",
        "changelist page 200": "/admin/jobqueue/job/?p=200",
        "status=failed": "/admin/jobqueue/job/?status=failed",
        "queue=q3": "/admin/jobqueue/job/?queue=q3",
        "task+status": "/admin/jobqueue/job/?task=demo.fail&status=failed",
        f"drill-down {year}": f"/admin/jobqueue/job/?created_at__year={year}",
        "search id": f"/admin/jobqueue/job/?q={newest}",
        "search error text": "/admin/jobqueue/job/?q=node+7",
        "search argument value": "/admin/jobqueue/job/?q=1003",
        "status=scheduled": "/admin/jobqueue/job/?status=scheduled",
        "job detail (failed)": f"/admin/jobqueue/job/{failed}/change/",
        "health": "/admin/jobqueue/job/health/",
        "workers": "/admin/jobqueue/worker/",
    }
    print(f"{'page':<24} {'status':>6} {'queries':>8} {'slowest q ms':>13} {'median ms':>10}")
    for name, url in pages.items():
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
        slowest = max(float(q["time"]) for q in queries.captured_queries) * 1000
        print(
            f"{name:<24} {response.status_code:>6} {len(queries):>8} {slowest:>13.1f} "
            f"{statistics.median(times) * 1000:>10.1f}"
        )


if __name__ == "__main__":
    main()
