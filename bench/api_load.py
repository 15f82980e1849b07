"""Load on the API under gunicorn: GET /api/jobs/{id}/ (and /api/queues/) with wrk.

    DATABASE_URL=postgres://... python bench/api_load.py [--seconds 10] [--finished 1000000]

Serves the project with gunicorn on a free 127.0.0.1 port against
DATABASE_URL (migrated first), with the production settings that the README
documents (project/gunicorn.conf.py: uvicorn workers, one per core, each with
16 threads for the requests that do not watch; --workers/--threads override
them), creates a user, a token and a queued job,
optionally adds N finished jobs (an hour-old history, to show that
/api/queues/ does not scan it), then runs wrk for a bounded time per route
and prints requests/s and p50/p99 latency. 127.0.0.1 only; needs `wrk`.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_data(finished: int) -> tuple[str, int]:
    """A token and a queued job to read; ``finished`` old finished jobs if asked."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from jobqueue.models import Job

    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="api-load")
    token, _ = Token.objects.get_or_create(user=user)
    job = Job.objects.create(task="demo.echo", owner=user)
    if finished:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO jobqueue_job (task, queue, priority, status, args, kwargs, errors,
                    progress_message, attempts, max_attempts, cancel_requested, created_at,
                    scheduled_at, started_at, finished_at)
                SELECT 'demo.echo', 'q' || (g %% 5), 0, 'succeeded', '[]', '{}', '[]', '', 1, 1,
                       false, t - interval '2 s', t - interval '2 s', t - interval '1 s', t
                FROM generate_series(1, %s) AS g,
                     LATERAL (SELECT now() - interval '2 hours' - g * interval '10 ms') AS x(t)
                """,
                [finished],
            )
            cursor.execute("VACUUM ANALYZE jobqueue_job")
    return token.key, job.pk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(workers: int | None, threads: int | None) -> tuple[subprocess.Popen, str]:
    """gunicorn as production runs it: ``--config project/gunicorn.conf.py``."""
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench",
        "LOG_LEVEL": "ERROR",
    }
    if workers is not None:
        env["GUNICORN_WORKERS"] = str(workers)
    if threads is not None:
        env["GUNICORN_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "project.asgi:application",
            "--config", "project/gunicorn.conf.py", "--log-level", "warning",
        ],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-H", f"Authorization: Token {token}", url,
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": to_ms(latency["50"]),
        "p99_ms": to_ms(latency["99"]),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, help="default: project/gunicorn.conf.py's")
    parser.add_argument("--threads", type=int, help="default: project/gunicorn.conf.py's")
    parser.add_argument("--finished", type=int, default=0, help="finished jobs to add first")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    token, job_id = setup_data(args.finished)
    proc, base = start_gunicorn(args.workers, args.threads)
    try:
        print(
            f"gunicorn --config project/gunicorn.conf.py (workers {args.workers or 'default'}, "
            f"threads {args.threads or 'default'}), wrk -c{args.connections} -d{args.seconds}s"
        )
        for route in (f"/api/jobs/{job_id}/", "/api/queues/"):
            run_wrk(base + route, token, 1, args.connections)  # warm up: imports, connections
            r = run_wrk(base + route, token, args.seconds, args.connections)
            print(
                f"GET {route}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, non-2xx {r['errors']}"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
