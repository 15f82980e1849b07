"""jobqueue under test: our own venv, project.settings, `demo.echo` as the no-op task.

Run as ``.venv/bin/python bench/drivers/jobqueue_driver.py WORKLOAD --dsn ...``
from the repository root. Workers are real ``manage.py runworker`` processes.
"""

import bisect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import common  # noqa: E402

FINISHED = "('succeeded', 'failed', 'cancelled')"
COUNT_FINISHED = f"SELECT count(*) FROM jobqueue_job WHERE status IN {FINISHED}"
LAST_FINISH = "SELECT extract(epoch FROM max(finished_at)) FROM jobqueue_job"
FIRST_START = "SELECT extract(epoch FROM min(started_at)) FROM jobqueue_job"
SIZES = """
SELECT pg_total_relation_size('jobqueue_job'), pg_relation_size('jobqueue_job'),
       pg_indexes_size('jobqueue_job')
"""


# Production settings, as the peers run: DEBUG off (with DEBUG on Django logs every query).
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "project.settings",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench",
    "LOG_LEVEL": "WARNING",
}


def django_setup(dsn: str) -> None:
    os.environ["DATABASE_URL"] = dsn
    for key, value in PRODUCTION.items():
        os.environ.setdefault(key, value)
    import django

    django.setup()


def worker_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), "runworker", "-v", "0", *args]


def worker_env(dsn: str) -> dict[str, str]:
    return {**PRODUCTION, "DATABASE_URL": dsn}


def reset(dsn: str) -> None:
    with common.connect(dsn) as conn:
        conn.execute("TRUNCATE jobqueue_job, jobqueue_worker RESTART IDENTITY CASCADE")


def bulk_enqueue(n: int, task: Any = None, args: tuple[Any, ...] = ()) -> str:
    """Enqueue n jobs of ``task`` (default the no-op) through the fastest public call.

    Returns which call it was.
    """
    from django.db import transaction
    from django.tasks import task_backends

    import demo

    backend = task_backends["default"]
    calls = [(args, {})] * n
    if hasattr(backend, "enqueue_many"):
        with transaction.atomic():
            backend.enqueue_many(task or demo.echo, calls)
        return "JobQueueBackend.enqueue_many (COPY)"
    from jobqueue.models import Job  # fallback before the bulk API existed

    template = backend.enqueue_job(demo.echo, [], {})
    fields = {f.attname: getattr(template, f.attname) for f in Job._meta.concrete_fields}
    fields.pop("id")
    Job.objects.bulk_create([Job(**fields) for _ in range(n - 1)], batch_size=5000)
    return "Job.objects.bulk_create (fallback: no enqueue_many)"


def insert_queued(dsn: str, n: int, *, vacuum: bool = False) -> None:
    """n queued jobs in one INSERT ... SELECT generate_series, copied from one real enqueue."""
    import demo

    template = demo.echo.enqueue()
    with common.connect(dsn) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'jobqueue_job' AND column_name <> 'id' "
                "ORDER BY ordinal_position"
            ).fetchall()
        ]
        col_list = ", ".join(cols)
        conn.execute(
            f"INSERT INTO jobqueue_job ({col_list}) SELECT {col_list} "
            "FROM jobqueue_job, generate_series(1, %s) WHERE id = %s",
            (n - 1, int(template.id)),
        )
        conn.execute("VACUUM ANALYZE jobqueue_job" if vacuum else "ANALYZE jobqueue_job")


# ---------------------------------------------------------------- workloads
def setup(args: Any) -> dict[str, Any]:
    django_setup(args.dsn)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    import django
    import psycopg

    return {"versions": {"django": django.__version__, "psycopg": psycopg.__version__}}


def bulk(args: Any) -> dict[str, Any]:
    django_setup(args.dsn)
    reset(args.dsn)
    api = []
    seconds = common.timed(lambda: api.append(bulk_enqueue(args.n)))
    return {**common.rate(args.n, seconds), "api": api[0]}


def single(args: Any) -> dict[str, Any]:
    django_setup(args.dsn)
    reset(args.dsn)
    import demo

    def run() -> None:
        for _ in range(args.n):
            demo.echo.enqueue()  # autocommit: one transaction per call

    return common.rate(args.n, common.timed(run))


def drain(args: Any) -> dict[str, Any]:
    django_setup(args.dsn)
    reset(args.dsn)
    bulk_enqueue(args.n)
    result = common.drain(
        args.dsn,
        n=args.n,
        worker_commands=[worker_command("--concurrency", str(args.concurrency), "--burst")],
        count_sql=COUNT_FINISHED,
        last_finish_sql=LAST_FINISH,
        env=worker_env(args.dsn),
    )
    failed = common.scalar(
        args.dsn, "SELECT count(*) FROM jobqueue_job WHERE status <> 'succeeded'"
    )
    return {**result, "not_succeeded": failed}


def io(args: Any) -> dict[str, Any]:
    """W5 in async mode: ``demo.wait`` (``await asyncio.sleep``), ``--async-slots`` per child."""
    return _io(args, "wait", "--async-slots", args.slots)


def io_threads(args: Any) -> dict[str, Any]:
    """W5 in thread mode: ``demo.fetch`` given a delay (``time.sleep``), ``--threads`` per child."""
    return _io(args, "fetch", "--threads", args.threads)


def _io(args: Any, task_name: str, option: str, per_child: int) -> dict[str, Any]:
    """args.n jobs of ``demo.<task_name>`` waiting args.wait_ms each, args.processes children."""
    django_setup(args.dsn)
    import demo

    reset(args.dsn)
    bulk_enqueue(args.n, getattr(demo, task_name), (args.wait_ms / 1000,))
    result = common.drain(
        args.dsn,
        n=args.n,
        worker_commands=[
            worker_command("--concurrency", str(args.processes), option, str(per_child), "--burst")
        ],
        count_sql=COUNT_FINISHED,
        last_finish_sql=LAST_FINISH,
        first_start_sql=FIRST_START,
        env=worker_env(args.dsn),
    )
    failed = common.scalar(
        args.dsn, "SELECT count(*) FROM jobqueue_job WHERE status <> 'succeeded'"
    )
    return {**result, "not_succeeded": failed}


def limit_concurrency(args: Any) -> dict[str, Any]:
    """A queue with ``concurrency: args.limit``: jobs of args.wait_ms each, drained by
    args.processes workers of args.concurrency children; the rate against the limit's
    ceiling (limit / wait), and the most jobs seen running at once (from the rows)."""
    django_setup(args.dsn)
    import demo

    options = {"concurrency": args.limit}
    result = _limited(args, options, demo.sleep, (args.wait_ms / 1000,))
    ceiling = args.limit / (args.wait_ms / 1000)
    return {**result, "ceiling": ceiling, "of_ceiling": result["value"] / ceiling}


def limit_rate(args: Any) -> dict[str, Any]:
    """A queue with ``rate: "{args.limit}/s"``: args.n no-op jobs; starts per second against the
    limit, and the busiest 1-second window of starts. A rate limit lets starts through in
    bursts (a window's worth at once), so the rate counts the last burst's window as a whole:
    n / (last start - first start + 1 s)."""
    django_setup(args.dsn)
    import demo

    result = _limited(args, {"rate": f"{args.limit}/s"}, demo.echo, ())
    rate = args.n / (result["seconds"] + 1.0)
    return {**result, "value": rate, "ceiling": args.limit, "of_ceiling": rate / args.limit}


def _limited(args: Any, options: dict[str, Any], task: Any, task_args: tuple) -> dict[str, Any]:
    import json

    reset(args.dsn)
    bulk_enqueue(args.n, task.using(queue_name="limited"), task_args)
    env = {**worker_env(args.dsn), "JOBQUEUE_QUEUES": json.dumps({"limited": options})}
    command = worker_command("--concurrency", str(args.concurrency), "--burst")
    common.drain(
        args.dsn,
        n=args.n,
        worker_commands=[command] * args.processes,
        count_sql=COUNT_FINISHED,
        last_finish_sql=LAST_FINISH,
        env=env,
    )
    with common.connect(args.dsn) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8"
            " FROM jobqueue_job WHERE status = 'succeeded' ORDER BY started_at"
        ).fetchall()
    starts = [s for s, _ in rows]
    events = sorted([(s, 1) for s, _ in rows] + [(f, -1) for _, f in rows])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    window = max(bisect.bisect_left(starts, s + 1.0) - i for i, s in enumerate(starts))
    span = starts[-1] - starts[0]
    return {
        "value": (len(starts) - 1) / span,
        "unit": "jobs/s",
        "seconds": span,
        "most_running_at_once": peak,
        "busiest_second_starts": window,
        "not_succeeded": args.n - len(rows),
    }


def latency(args: Any) -> dict[str, Any]:
    """Enqueue to start, as for every system; also start minus the moment enqueue() returned.

    enqueue() returns once its transaction has committed, so the second figure
    is the worker's own share (NOTIFY, wake-up, claim); the difference is the
    enqueue's INSERT and commit, that is this machine's WAL flush.
    """
    django_setup(args.dsn)
    reset(args.dsn)
    import time

    import demo

    returned: dict[int, float] = {}

    def enqueue_one() -> None:
        result = demo.echo.enqueue()
        returned[int(result.id)] = time.time()  # the server's clock: same machine

    result = common.latency(
        args.dsn,
        n=args.n,
        interval_ms=args.interval_ms,
        worker_commands=[worker_command("--concurrency", str(args.concurrency))],
        enqueue_one=enqueue_one,
        count_sql=COUNT_FINISHED,
        delays_sql="SELECT extract(epoch FROM started_at - created_at) * 1000 FROM jobqueue_job "
        "WHERE started_at IS NOT NULL",
        env=worker_env(args.dsn),
    )
    with common.connect(args.dsn) as conn:
        started = dict(conn.execute("SELECT id, extract(epoch FROM started_at) FROM jobqueue_job"))
    after_commit = [1000 * (float(started[i]) - t) for i, t in returned.items()]
    return {**result, "after_commit": common.percentiles(after_commit)}


def depth(args: Any) -> dict[str, Any]:
    """Drain args.n jobs with args.n queued, then args.n of args.queued queued: the rate ratio.

    Each rate runs from the first claim to the last finish, read from the rows:
    the worker's start (the same at any depth, and half of a one-second drain)
    would otherwise set the ratio more than the claim does.
    """
    django_setup(args.dsn)
    rates = {}
    for queued in (args.n, args.queued):
        reset(args.dsn)
        # Vacuumed first, as autovacuum leaves a table that grew by inserts: the
        # measured drain then shows the claim at that depth, not autovacuum's
        # one-off first pass over a million fresh rows competing for the cores.
        insert_queued(args.dsn, queued, vacuum=True)
        common.drain(
            args.dsn,
            n=args.n,
            worker_commands=[
                worker_command("--concurrency", str(args.concurrency), "--max-jobs", str(args.n))
            ],
            count_sql="SELECT count(*) FROM jobqueue_job WHERE status = 'succeeded'",
            last_finish_sql=LAST_FINISH,
            env=worker_env(args.dsn),
        )
        rates[queued] = common.scalar(
            args.dsn,
            "SELECT count(*) / extract(epoch FROM max(finished_at) - min(started_at))::float "
            "FROM jobqueue_job WHERE status = 'succeeded'",
        )
    return {
        "value": rates[args.queued] / rates[args.n],
        "unit": "ratio",
        "rate_small": rates[args.n],
        "rate_large": rates[args.queued],
        "queued_small": args.n,
        "queued_large": args.queued,
    }


def bloat(args: Any) -> dict[str, Any]:
    """Run args.n jobs through claim and ack in cycles, purging and vacuuming after each.

    The jobs go through the worker's own claim and ack statements (jobqueue/queries/)
    in batches the size a busy supervisor claims, without forking children:
    the table sees the same row churn in a fraction of the time. Each cycle
    ends as production does once autovacuum has passed after a purge; the
    size after each cycle shows whether freed space is reused (flat) or the
    table keeps growing. The value is the size after the last cycle, in MB.
    """
    django_setup(args.dsn)
    reset(args.dsn)
    cycles = 10 if args.n >= 100_000 else 3
    per_cycle = args.n // cycles
    after_cycle = []
    ran = 0
    with common.connect(args.dsn) as conn:
        empty = _sizes(conn)
        for _ in range(cycles):
            insert_queued(args.dsn, per_cycle)
            ran += _churn(conn)
            peak = _sizes(conn)
            purge = _purge(args.dsn)
            conn.execute("VACUUM jobqueue_job")
            after_cycle.append(_sizes(conn))
    # Index pages emptied by one VACUUM are recycled only after the next one
    # (PostgreSQL deletes B-tree pages in two phases), so the size settles at the
    # second cycle; growth is measured from there.
    settled, last = after_cycle[1]["total"], after_cycle[-1]["total"]
    return {
        "value": last,
        "unit": "MB",
        "jobs_run": ran,
        "cycles": cycles,
        "empty": empty,
        "after_last_run": peak,
        "after_first_cycle_mb": after_cycle[0]["total"],
        "after_second_cycle_mb": settled,
        # Growth from the second cycle to the last, once vacuumed: 0 when space is reused.
        "growth_pct": round(100 * (last - settled) / settled, 1) if settled else 0.0,
        "total_after_each_cycle_mb": [c["total"] for c in after_cycle],
        "indexes_after_each_cycle_mb": [c["indexes"] for c in after_cycle],
        "purge": purge,
    }


def _churn(conn: Any, demand: int = 200) -> int:
    """Claim and acknowledge every queued job, ``demand`` at a time, as one supervisor would."""
    from jobqueue import queries
    from jobqueue.worker.outcome import Outcome

    with conn.cursor() as cur:
        worker = queries.register_worker(
            cur, hostname="bench", pid=os.getpid(), queues=(), concurrency=2, lease=30
        )
        ran = 0
        while True:
            queries.claim(cur, worker=worker, demand=demand, queues=())
            rows = queries.claimed(cur)
            if not rows:
                break
            outcomes = [
                Outcome(job_id=r[0], token=r[-1], status="succeeded", result_json="{}").as_row()
                for r in rows
            ]
            queries.ack(cur, worker=worker, worker_name="bench", outcomes=outcomes)
            ran += len(rows)
        queries.unregister_worker(cur, worker=worker)
    return ran


def _purge(dsn: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "purge_jobs", "--older-than", "0s"],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    if proc.returncode == 0:
        return "manage.py purge_jobs --older-than 0s"
    with common.connect(dsn) as conn:  # fallback while purge_jobs is not there
        while conn.execute(
            "DELETE FROM jobqueue_job WHERE id IN (SELECT id FROM jobqueue_job "
            f"WHERE status IN {FINISHED} LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        ).rowcount:
            pass
    return f"SQL batches of 1000 (purge_jobs failed: {proc.stderr.strip()[-200:]})"


def _sizes(conn: Any) -> dict[str, float]:
    total, heap, indexes = conn.execute(SIZES).fetchone()
    mb = 1024 * 1024
    return {
        "total": round(total / mb, 2),
        "heap": round(heap / mb, 2),
        "indexes": round(indexes / mb, 2),
    }


def api(args: Any) -> dict[str, Any]:
    """The API engineer's bench/api_load.py (gunicorn + wrk), its job-status route parsed."""
    import re

    reset(args.dsn)  # a deep queue left by the depth workload would skew position_in_queue
    with common.connect(args.dsn) as conn:
        conn.execute("CHECKPOINT")  # as for latency: not while the bloat run's writes are flushed
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "api_load.py"), "--seconds", str(args.seconds)],
        env={**os.environ, "DATABASE_URL": args.dsn, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    match = re.search(
        r"GET /api/jobs/\d+/: ([\d.]+) req/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms", proc.stdout
    )
    if proc.returncode != 0 or not match:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"api_load.py exit {proc.returncode}: {tail[0][:200]}")
    rps, p50, p99 = map(float, match.groups())
    return {"value": rps, "unit": "req/s", "p50": p50, "p99": p99, "output": proc.stdout[-500:]}


if __name__ == "__main__":
    common.run_main(
        {
            "setup": setup,
            "bulk": bulk,
            "single": single,
            "drain": drain,
            "latency": latency,
            "depth": depth,
            "bloat": bloat,
            "api": api,
            "io": io,
            "io_threads": io_threads,
            "limit_concurrency": limit_concurrency,
            "limit_rate": limit_rate,
        }
    )
