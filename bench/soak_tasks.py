"""The recording task of the fault tests and the soak, and the table it writes every run to.

The queue's own rows say how a job ended, not how often or where it ran. So
the task keeps a diary of its own in ``soak_run``, written through its own
autocommit connection (``SOAK_RECORD_URL``, which bypasses any proxy or
fault aimed at the worker's connections): one row per run with the job id,
the attempt, the child's and its supervisor's pids, and wall-clock times
taken in the task itself (so a run that outlives the database's restart
still has true times once they can be written). ``last_seen`` is refreshed
about every 50 ms while it runs, so a run killed mid-way ends near its last
sign of life. Every process is on this machine, so the clocks agree.

The result is derived from the arguments only, so a result stored on the
wrong job, or a stale one, shows up as wrong.

``enqueue()`` adds jobs to any database through the project's own
enqueue_many (not SQL, so it stays right whatever the schema becomes), in a
process set up on that database: the tests' own process runs Django on the
test database, not on the cluster they own.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.tasks import task

ROOT = Path(__file__).resolve().parent.parent
RECORD_URL_ENV = "SOAK_RECORD_URL"
TASK_PATH = "bench.soak_tasks.run"
# Enough attempts that only a real loss, not a run of bad luck under faults
# (killed children, rescues), leaves a job failed.
MAX_ATTEMPTS = 25
TOUCH_INTERVAL = 0.05
# How long a run waits for the database to write its start or finish (a restart takes ~2 s).
WRITE_PATIENCE = 60.0

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS soak_run (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    supervisor_pid int NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS soak_run_job ON soak_run (job_id);
"""


def expected_result(key: int) -> str:
    """What the job with argument ``key`` must return (and so store)."""
    return f"{key}:{hashlib.sha256(str(key).encode()).hexdigest()[:16]}"


class _Recorder:
    """This process's connection for the diary, opened again whenever it breaks."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection | None = None
        self.pid = 0

    def _execute(self, query: str, params: tuple) -> tuple | None:
        if self.conn is None or self.conn.closed or self.conn.broken or self.pid != os.getpid():
            url = os.environ.get(RECORD_URL_ENV) or os.environ["DATABASE_URL"]
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
            self.pid = os.getpid()
        return self.conn.execute(query, params).fetchone()

    def write(self, query: str, params: tuple, *, patient: bool) -> tuple | None:
        """Run one statement; a patient write retries until the database is back."""
        deadline = time.monotonic() + (WRITE_PATIENCE if patient else 0)
        while True:
            try:
                return self._execute(query, params)
            except psycopg.OperationalError:
                if self.conn is not None:
                    self.conn.close()
                if time.monotonic() >= deadline:
                    if patient:
                        raise
                    return None
                time.sleep(0.2)


_recorder = _Recorder()


@task(takes_context=True, max_attempts=MAX_ATTEMPTS)
def run(context, key: int, seconds: float) -> str:
    """Record this run, stay busy for ``seconds`` while touching it, record its end."""
    row = _recorder.write(
        "INSERT INTO soak_run (job_id, attempt, pid, supervisor_pid, started_at, last_seen) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (int(context.task_result.id), context.attempt, os.getpid(), os.getppid(),
         _now(), _now()),
        patient=True,
    )  # fmt: skip
    assert row is not None
    run_id = row[0]
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TOUCH_INTERVAL, left))
        if left > TOUCH_INTERVAL:
            _recorder.write(
                "UPDATE soak_run SET last_seen = %s WHERE id = %s", (_now(), run_id), patient=False
            )
    finished = _now()
    _recorder.write(
        "UPDATE soak_run SET finished_at = %s, last_seen = %s WHERE id = %s",
        (finished, finished, run_id),
        patient=True,
    )
    return expected_result(key)


def _now() -> datetime:
    return datetime.now(UTC)


def create_table(conn: psycopg.Connection) -> None:
    conn.execute(RUNS_DDL)


def enqueue(url: str, jobs: list[tuple[int, float]]) -> list[int]:
    """Enqueue one ``run(key, seconds)`` per item on the database at ``url``; the job ids."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); import bench.soak_tasks as t; t.enqueue_main()",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"enqueue failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def enqueue_main() -> None:
    """Read ``[[key, seconds], ...]`` on stdin, enqueue on DATABASE_URL, print the job ids."""
    from django.tasks import default_task_backend

    jobs = json.load(sys.stdin)
    calls = [((), {"key": key, "seconds": seconds}) for key, seconds in jobs]
    results = default_task_backend.enqueue_many(run, calls)
    json.dump([int(r.id) for r in results], sys.stdout)
