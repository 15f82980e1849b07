"""Real ``manage.py runworker`` processes to inject faults into, for the fault tests and the soak.

They are driven as black boxes: started with a DATABASE_URL and settings in
the environment, then stopped, continued, terminated or killed with signals,
and their forked children found with psutil. Which job a child runs is read
from the recording task's ``soak_run`` rows (bench/soak_tasks.py), not from
the worker's internals.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from bench.recording import RECORD_URL_ENV

ROOT = Path(__file__).resolve().parent.parent

# Short heartbeats and leases so that a lost worker's jobs are rescued within seconds
# (tests.conftest.WORKER_ENV is this too).
FAULT_WORKER_ENV = {
    "JOBQUEUE_HEARTBEAT_INTERVAL": "0.5",
    "JOBQUEUE_LEASE": "3",
    "JOBQUEUE_POLL_INTERVAL": "0.5",
    "JOBQUEUE_CANCEL_GRACE": "1",
    "JOBQUEUE_BACKOFF_BASE": "0.2",
    "JOBQUEUE_BACKOFF_MAX": "1",
}
LEASE = float(FAULT_WORKER_ENV["JOBQUEUE_LEASE"])
# The application_name of the workers' own connections (supervisors' and
# children's), so that faults can find them in pg_stat_activity.
WORKER_APPLICATION = "faults-worker"


class Worker:
    """One ``runworker`` supervisor (and, through psutil, its children)."""

    def __init__(
        self,
        database_url: str,
        *,
        record_url: str,
        log: Path,
        concurrency: int = 2,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = log
        self._out = log.open("ab")
        full_env = {
            **os.environ,
            **FAULT_WORKER_ENV,
            **(env or {}),
            "DATABASE_URL": database_url,
            RECORD_URL_ENV: record_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runworker", "--concurrency", str(concurrency), *args],
            cwd=ROOT,
            env=full_env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.stopped = False  # SIGSTOPped by us and not continued yet

    def alive(self) -> bool:
        return self.proc.poll() is None

    def children(self) -> list[psutil.Process]:
        """The supervisor's live forked children (the processes that run jobs)."""
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        live = []
        for kid in kids:
            try:
                if kid.status() != psutil.STATUS_ZOMBIE:
                    live.append(kid)
            except psutil.NoSuchProcess:
                continue
        return live

    def sigstop(self) -> None:
        """Freeze the supervisor only: its children keep running, as on a stalled host thread."""
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def terminate(self) -> None:
        """SIGTERM: the graceful shutdown a deploy does."""
        if self.stopped:
            self.sigcont()
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """kill -9 the supervisor (its children die with it, by PR_SET_PDEATHSIG)."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.stopped = False

    def kill_child(self, pid: int) -> bool:
        """kill -9 one child; False if it was already gone."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def close(self, timeout: float = 10) -> None:
        """Stop it (gracefully if it will within ``timeout``), kill it otherwise."""
        if self.alive():
            self.terminate()
            if self.wait(timeout) is None:
                self.kill()
        self._out.close()
