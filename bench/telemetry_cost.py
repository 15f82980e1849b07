"""What metrics and JSON job logs cost the drain: runworker with them on and off, interleaved.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jq_telemetry_bench \
        python bench/telemetry_cost.py [--jobs 20000] [--rounds 3]

Each round enqueues ``--jobs`` no-op jobs (``demo.echo``, one COPY), then runs
``runworker --concurrency 2 --burst`` until they are drained, three times:
"off" as ``make bench`` runs it (``-v 0``: no job events); "metrics" with
``--metrics-port`` served; "metrics+logs" also with ``JOBQUEUE_LOG_FORMAT=json``
at ``-v 1``, so that every job writes its claimed, started and succeeded events
as JSON lines (to a file). The drain rate runs from the worker's start to the
last job's finish time in the database, as in ``make bench``. The modes
alternate, so that a machine busy with other work slows them alike; it prints
each run and the median rates and their ratios to "off".
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import migrated_django  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MODES = ("off", "metrics", "metrics+logs")


def drain(jobs: int, mode: str, log: Path) -> float:
    """Enqueue ``jobs`` and drain them with one worker; returns jobs per second."""
    from django.db import connection, transaction
    from django.tasks import task_backends

    import demo

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobqueue_job, jobqueue_worker RESTART IDENTITY CASCADE")
    with transaction.atomic():
        task_backends["default"].enqueue_many(demo.echo, [((), {})] * jobs)  # type: ignore[attr-defined]
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"}
    args = ["--concurrency", "2", "--burst", "-v", "1" if mode == "metrics+logs" else "0"]
    if mode != "off":
        args += ["--metrics-port", str(free_port()), "--metrics-host", "127.0.0.1"]
    if mode == "metrics+logs":
        env["JOBQUEUE_LOG_FORMAT"] = "json"
    with log.open("wb") as out:
        started = time.time()
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "runworker", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), extract(epoch FROM max(finished_at)) FROM jobqueue_job "
            "WHERE status = 'succeeded'"
        )
        done, last = cursor.fetchone()
    assert done == jobs, f"{done} of {jobs} jobs succeeded"
    return jobs / (float(last) - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # not this process's own enqueued events
    args = migrated_django(parser)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(1, args.rounds + 1):
            for mode in MODES:
                log = Path(folder) / "worker.log"
                rate = drain(args.jobs, mode, log)
                rates[mode].append(rate)
                lines = len(log.read_bytes().splitlines())
                print(f"round {round_} {mode:>12}: {rate:,.0f} jobs/s ({lines:,} log lines)")
    off = statistics.median(rates["off"])
    for mode in MODES:
        median = statistics.median(rates[mode])
        print(f"median {mode:>12}: {median:,.0f} jobs/s, {median / off:.2f} of off")


if __name__ == "__main__":
    main()
