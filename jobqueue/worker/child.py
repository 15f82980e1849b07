"""A child process: receives assignments over a pipe, runs them, sends reports back.

Children are forked from the supervisor, so they start hot (Django set up,
task modules imported). They ignore SIGINT/SIGTERM: the supervisor decides
when they stop, and kills one only to end a job that will not stop.
"""

import ctypes
import os
import signal
import sys
from multiprocessing.connection import Connection

from django.db import close_old_connections

from jobqueue.db import LazyConnection
from jobqueue.worker.executor import Assignment, Executor

STOP = None  # the message that tells a child to exit


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this child when the supervisor dies.

    A supervisor killed with -9 cannot stop its children; without this an
    orphaned child would finish its job while the rescue re-runs it elsewhere.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        os._exit(1)


def child_main(
    pipe: Connection, inherited: list[Connection], worker_name: str, parent_pid: int
) -> None:
    """Entry point of a child process (multiprocessing target)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    for other in inherited:  # the other children's pipes: only the supervisor may hold them
        other.close()
    executor = Executor(progress_connection=LazyConnection(), worker_name=worker_name)
    while True:
        try:
            message = pipe.recv()
        except EOFError:
            return
        if message is STOP:
            return
        job = Assignment(*message)
        close_old_connections()
        report = executor.execute(job)
        close_old_connections()
        pipe.send(report)
