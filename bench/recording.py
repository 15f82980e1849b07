"""The diary of the fault tests and the soak: the ``soak_run`` table, expected results, enqueue.

The queue's own rows say how a job ended, not how often or where it ran. So
the recording task (bench/soak_tasks.py) keeps a diary of its own in
``soak_run``: one row per run with the job id, the attempt, the child's and
its supervisor's pids, and wall-clock times taken in the task itself (so a
run that outlives the database's restart still has true times once they can
be written). ``last_seen`` is refreshed about every 50 ms while it runs, so
a run killed mid-way ends near its last sign of life. Every process is on
this machine, so the clocks agree.

This module does not import the task, so the soak's own process and the
fault tools can use it without setting Django up.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# The recording task's database URL; it bypasses any proxy or fault aimed at the workers.
RECORD_URL_ENV = "SOAK_RECORD_URL"
# The recording task in each execution mode it is soaked in (bench/soak_tasks.py).
TASKS = {"process": "bench.soak_tasks.run", "async": "bench.soak_tasks.run_async"}
TASK_PATHS = list(TASKS.values())

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
    """What the job with argument ``key`` must return (and so store).

    Derived from the argument only, so a result stored on the wrong job, or a
    stale one, shows up as wrong.
    """
    return f"{key}:{hashlib.sha256(str(key).encode()).hexdigest()[:16]}"


def create_table(conn: psycopg.Connection) -> None:
    conn.execute(RUNS_DDL)


def enqueue(url: str, jobs: list[tuple[int, float]], execution: str = "process") -> list[int]:
    """Enqueue one ``run(key, seconds)`` per item on the database at ``url``; the job ids.

    ``execution`` picks the recording task of that mode (``run_async`` for "async").

    Through the project's own enqueue_many (not SQL, so it stays right
    whatever the schema becomes), in a process set up on that database: the
    tests' own process runs Django on the test database, the soak's none.
    """
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); import bench.recording as r; r.enqueue_main()",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        input=json.dumps({"task": TASKS[execution], "jobs": jobs}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"enqueue failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def enqueue_main() -> None:
    """Read ``{"task", "jobs": [[key, seconds], ...]}`` on stdin, enqueue on DATABASE_URL,
    print the job ids."""
    from django.tasks import default_task_backend

    from jobqueue.backend import load_task

    given = json.load(sys.stdin)
    calls = [((), {"key": key, "seconds": seconds}) for key, seconds in given["jobs"]]
    results = default_task_backend.enqueue_many(load_task(given["task"]), calls)
    json.dump([int(r.id) for r in results], sys.stdout)
