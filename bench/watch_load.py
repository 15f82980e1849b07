"""Watchers at scale: SSE streams and long-polls against one ASGI server, bounded in time.

    DATABASE_URL=postgres://... python bench/watch_load.py [--streams 10000] [--polls 1000]
        [--jobs 1000] [--seconds 30] [--rate 50]

Serves the project as production does (``gunicorn project.asgi --config
project/gunicorn.conf.py``) on a free 127.0.0.1 port, with the per-user watch
limit raised (this measures capacity, not fairness), and creates users with
tokens and ``--jobs`` running jobs. A separate process, the asyncio client
(``--client``, no third-party HTTP library), then opens the event streams and
long-polls at a bounded rate, and for ``--seconds``:

- reports progress on ``--rate`` jobs a second (each job at most once a second,
  so the hub reads every update rather than coalescing them; commits without
  waiting for the WAL flush, which this benchmark does not measure), with the
  send time in the message: the delay to each stream that receives it is the
  progress->watcher latency, and an update a stream never receives is a dropped
  event (every stream here reads as fast as it can);
- times ``GET /api/health/`` and a submit (``POST /api/jobs/``) five times a
  second each.

The parent reads the server's RSS (all its processes) before and after the
streams open, and the database's connections from ``pg_stat_activity``
(those of the watchers' hubs by their application name). File-descriptor
limits are raised to the hard limit in every process. 127.0.0.1 only.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USERS = 20


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def django_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()


def setup_data(jobs: int) -> dict[str, Any]:
    """Users with tokens, and ``jobs`` running jobs claimed for a worker row (their tokens)."""
    django_setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from jobqueue import db, queries
    from jobqueue.models import Job, Worker

    call_command("migrate", verbosity=0)
    users = [User.objects.get_or_create(username=f"watch-load-{i}")[0] for i in range(USERS)]
    token_of = {user.pk: Token.objects.get_or_create(user=user)[0].key for user in users}
    Job.objects.filter(owner__in=users).delete()
    Job.objects.bulk_create(
        Job(task="demo.sleep", queue="watch-load", owner=users[i % USERS]) for i in range(jobs)
    )
    worker = Worker.objects.create(hostname="watch-load", pid=os.getpid(), concurrency=jobs)
    with db.connect() as conn, conn.cursor() as cursor:
        queries.claim(cursor, worker=worker.pk, demand=jobs, queues=["watch-load"])
        claimed = [(row[0], row[-1]) for row in queries.claimed(cursor)]
    owner_of = dict(Job.objects.filter(pk__in=[i for i, _ in claimed]).values_list("pk", "owner"))
    return {
        "jobs": [
            {"id": job_id, "lease": lease, "token": token_of[owner_of[job_id]]}
            for job_id, lease in claimed
        ],
        "submit_token": token_of[users[0].pk],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench",
        "LOG_LEVEL": "ERROR",
        "JOBQUEUE_EXPOSE_DEMO": "1",
        "JOBQUEUE_API_SUBMIT_RATE": "1000000/min",
        "JOBQUEUE_WATCH_PER_USER": "100000",
    }
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "project.asgi:application",
            "--config", "project/gunicorn.conf.py", "--log-level", "warning",
        ],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(1)  # every worker process up
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def server_rss_mb(proc: subprocess.Popen) -> float:
    import psutil

    root = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def db_connections() -> tuple[int, int]:
    """Connections to this database: all of them, and those of the watchers' hubs."""
    from jobqueue import db
    from jobqueue.api.hub import APP_NAME

    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE application_name = %s)"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            [APP_NAME],
        ).fetchone()
    return row[0], row[1]


# ------------------------------------------------------------------ the client process
async def request(port: int, method: str, path: str, token: str, body: bytes = b"") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status


class Client:
    def __init__(self, port: int, data: dict[str, Any], args: argparse.Namespace) -> None:
        self.port = port
        self.jobs = data["jobs"]
        self.submit_token = data["submit_token"]
        self.args = args
        self.measuring = False
        self.open_streams = 0
        self.refused: dict[str, int] = {}
        self.latencies: list[float] = []
        self.received: dict[int, set[int]] = {}  # stream -> progress sequence numbers seen
        self.stream_job: dict[int, int] = {}
        self.sent: dict[int, list[int]] = {}  # job -> sequence numbers sent while measuring
        self.poll_replies = 0
        self.probes: dict[str, list[float]] = {"health": [], "submit": []}

    async def stream(self, n: int, job: dict[str, Any], ready: asyncio.Event) -> None:
        try:
            await self._stream(n, job, ready)
        except Exception as e:  # a refused or broken connection: counted, not fatal
            self.refused[type(e).__name__] = self.refused.get(type(e).__name__, 0) + 1
        finally:
            ready.set()

    async def _stream(self, n: int, job: dict[str, Any], ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
        writer.write(
            f"GET /api/jobs/{job['id']}/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {job['token']}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        if status != 200:
            self.refused[str(status)] = self.refused.get(str(status), 0) + 1
            writer.close()
            return
        self.open_streams += 1
        self.stream_job[n] = job["id"]
        seen = self.received.setdefault(n, set())
        try:
            while line := await reader.readline():
                if not line.startswith(b"data:"):
                    continue  # headers, ids, keep-alives and the chunked encoding's size lines
                state = json.loads(line[5:])
                ready.set()
                message = state["progress"]["message"] or ""
                if self.measuring and message.startswith("seq="):
                    seq, sent_at = message[4:].split(" t=")
                    self.latencies.append(time.time() - float(sent_at))
                    seen.add(int(seq))
        finally:
            self.open_streams -= 1

    async def long_poll(self, job: dict[str, Any]) -> None:
        while True:
            path = f"/api/jobs/{job['id']}/?wait=25"
            try:
                status = await request(self.port, "GET", path, job["token"])
            except Exception as e:  # a refused or broken connection: counted, then again
                status = type(e).__name__
            if status == 200:
                self.poll_replies += 1
            else:
                self.refused[f"poll {status}"] = self.refused.get(f"poll {status}", 0) + 1
                await asyncio.sleep(1)

    async def probe(self, name: str, method: str, path: str, body: bytes = b"") -> None:
        while True:
            started = time.perf_counter()
            try:
                status = await request(self.port, method, path, self.submit_token, body)
            except Exception as e:  # counted as a failed probe
                key = f"{name} {type(e).__name__}"
                self.refused[key] = self.refused.get(key, 0) + 1
                status = 599
            if self.measuring and status < 400:
                self.probes[name].append(time.perf_counter() - started)
            await asyncio.sleep(0.2)

    def progress_driver(self, stop: threading.Event) -> None:
        """In a thread: progress on ``--rate`` jobs a second, each job at most once a second."""
        django_setup()
        from jobqueue import db, queries

        period = 1.0 / self.args.rate
        seq = 0
        with db.connect() as conn, conn.cursor() as cursor:
            # The commit's WAL flush on this shared disk is not what is measured here.
            cursor.execute("SET synchronous_commit = off")
            started = time.monotonic()
            while not stop.is_set():
                time.sleep(max(0.0, started + seq * period - time.monotonic()))
                job = self.jobs[seq % len(self.jobs)]
                seq += 1
                message = f"seq={seq} t={time.time()}"
                queries.report_progress(
                    cursor, job_id=job["id"], token=job["lease"], percent=seq % 100, message=message
                )
                self.sent.setdefault(job["id"], []).append(seq)

    async def run(self) -> dict[str, Any]:
        args = self.args
        tasks = []
        readies = []
        opened = time.monotonic()
        for n in range(args.streams):
            ready = asyncio.Event()
            readies.append(ready)
            tasks.append(asyncio.create_task(self.stream(n, self.jobs[n % len(self.jobs)], ready)))
            if n % 100 == 99:
                await asyncio.sleep(100 / args.open_rate)
        waiting = [asyncio.create_task(r.wait()) for r in readies]
        await asyncio.wait(waiting, timeout=args.open_timeout)
        open_seconds = time.monotonic() - opened
        for n in range(args.polls):
            tasks.append(asyncio.create_task(self.long_poll(random.choice(self.jobs))))
            if n % 100 == 99:
                await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        print(json.dumps({"phase": "open", "streams": self.open_streams}), flush=True)
        input()  # the parent has read the server's RSS with every watcher open
        body = json.dumps({"task": "demo.echo", "queue": "watch-load-submit"}).encode()
        tasks.append(asyncio.create_task(self.probe("health", "GET", "/api/health/")))
        tasks.append(asyncio.create_task(self.probe("submit", "POST", "/api/jobs/", body)))
        stop = threading.Event()
        self.measuring = True
        driver = threading.Thread(target=self.progress_driver, args=(stop,))
        driver.start()
        await asyncio.sleep(args.seconds)
        stop.set()
        driver.join()
        await asyncio.sleep(2)  # the last updates arrive
        self.measuring = False
        return self.report(open_seconds)

    def report(self, open_seconds: float) -> dict[str, Any]:
        expected = dropped = 0
        for n, job_id in self.stream_job.items():
            sent = self.sent.get(job_id, [])
            expected += len(sent)
            dropped += len(set(sent) - self.received.get(n, set()))

        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            values = sorted(values)
            return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

        return {
            "streams_open": self.open_streams,
            "streams_open_seconds": round(open_seconds, 1),
            "refused": self.refused,
            "long_poll_replies": self.poll_replies,
            "progress_updates": sum(len(v) for v in self.sent.values()),
            "events_expected": expected,
            "events_dropped": dropped,
            "latency_p50_ms": pct(self.latencies, 0.5),
            "latency_p99_ms": pct(self.latencies, 0.99),
            "latency_max_ms": pct(self.latencies, 1.0),
            **{
                f"{name}_{label}_ms": pct(values, q)
                for name, values in self.probes.items()
                for label, q in (("p50", 0.5), ("p99", 0.99))
            },
            "probes": {name: len(values) for name, values in self.probes.items()},
        }


def client_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    data = json.loads(sys.stdin.readline())
    result = asyncio.run(Client(args.port, data, args).run())
    print(json.dumps({"phase": "done", **result}), flush=True)
    os._exit(0)  # open connections and tasks need no orderly teardown


# ------------------------------------------------------------------ the parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=1_000)
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=50, help="progress updates per second")
    parser.add_argument("--open-rate", type=int, default=200, help="streams opened per second")
    parser.add_argument("--open-timeout", type=int, default=300, help="seconds to open them all")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    limit = raise_fd_limit()
    if args.streams + args.polls + 500 > limit:
        raise SystemExit(f"{args.streams + args.polls} watchers need more than {limit} files")
    if args.rate > args.jobs:
        raise SystemExit("--rate must not exceed --jobs: each job is updated once a second at most")
    data = setup_data(args.jobs)
    proc, port = start_server()
    client = None
    try:
        rss_idle = server_rss_mb(proc)
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", "--port", str(port), *sys.argv[1:]],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        client.stdin.write(json.dumps(data) + "\n")
        client.stdin.flush()
        opened = json.loads(client.stdout.readline())
        rss_open = server_rss_mb(proc)
        connections_open = db_connections()
        client.stdin.write("\n")
        client.stdin.flush()
        result = json.loads(client.stdout.readline())
        watchers = opened["streams"] + args.polls
        summary = {
            "streams": args.streams,
            "long_polls": args.polls,
            "jobs": args.jobs,
            "seconds": args.seconds,
            **{k: v for k, v in result.items() if k != "phase"},
            "server_rss_idle_mb": round(rss_idle, 1),
            "server_rss_with_watchers_mb": round(rss_open, 1),
            "kb_per_idle_watcher": round((rss_open - rss_idle) * 1024 / max(watchers, 1), 1),
            "db_connections": connections_open[0],
            "db_connections_of_watcher_hubs": connections_open[1],
        }
        print(json.dumps(summary, indent=2))
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
