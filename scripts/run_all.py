"""`make run`: the web server and one worker, side by side, until Ctrl-C.

The embedded PostgreSQL (when DATABASE_URL is unset) was started by the
`migrate` step before this and keeps running for every process.
"""

import os
import signal
import subprocess
import sys
import time

PYTHON = sys.executable


def main() -> int:
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "project.asgi", "--config", "project/gunicorn.conf.py"]
        ),
        subprocess.Popen(
            [PYTHON, "manage.py", "runworker", "--concurrency",
             os.environ.get("WORKER_CONCURRENCY", "2")]
        ),
    ]  # fmt: skip
    print(
        "jobqueue is running: http://127.0.0.1:8000/admin/ (admin / admin), "
        "http://127.0.0.1:8000/api/docs/ — Ctrl-C stops both.",
        flush=True,
    )
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return max(p.wait(timeout=60) or 0 for p in procs)


if __name__ == "__main__":
    sys.exit(main())
