"""A child process: receives assignments over a pipe, runs them, sends reports back.

Children are forked from the supervisor, so they start hot (Django set up,
task modules imported). They ignore SIGINT/SIGTERM: the supervisor decides
when they stop, and kills one only to end a job that will not stop.
"""

import contextlib
import ctypes
import os
import signal
import sys
import threading

from django.db import close_old_connections

from jobqueue.db import LazyConnection
from jobqueue.worker.channel import Channel, ChannelClosed
from jobqueue.worker.concurrent import ConcurrentRunner
from jobqueue.worker.executor import Assignment, Executor
from jobqueue.worker.fence import LeaseFence, watch_in_child
from jobqueue.worker.storable import describe_error

STOP = None  # the message that tells a child to exit
CANCEL = "cancel"  # (CANCEL, job_id): cancel that async job now
# (LAST_WORDS, error): the child's last message, the exception that is ending it, so
# that the jobs it dies with say what killed it (children.Child.death_note).
LAST_WORDS = "last words"


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
    channel: Channel,
    inherited: list[Channel],
    worker_name: str,
    parent_pid: int,
    fence: LeaseFence,
    *,
    threads: int,
) -> None:
    """Entry point of a child process (multiprocessing target).

    The main thread reads the channel and runs process-mode jobs itself;
    thread- and async-mode jobs go to the concurrent runner (concurrent.py).
    """
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    for other in inherited:  # the other children's channels: only the supervisor may hold them
        other.close()
    executor = Executor(progress_connection=LazyConnection(), worker_name=worker_name)
    concurrent = ConcurrentRunner(executor, channel, threads=threads)
    watch_in_child(fence, lambda: executor.running or concurrent.running())
    try:
        _serve(channel, executor, concurrent)
    except BaseException as e:  # it ends this child: say what it was, then die of it
        _say_last_words(channel, concurrent.send_lock, e)
        raise


def _serve(channel: Channel, executor: Executor, concurrent: ConcurrentRunner) -> None:
    """Run what the supervisor sends until it says STOP or closes the channel."""
    while True:
        try:
            message = channel.receive()
        except ChannelClosed:
            return
        if message is STOP:
            return
        if isinstance(message, tuple):  # (CANCEL, job_id)
            concurrent.cancel(message[1])
            continue
        jobs = [Assignment(*fields) for fields in message]
        if jobs[0].execution != "process":
            concurrent.start(jobs)
            continue
        # A batch of process-mode jobs, run in order; each is reported as soon as it
        # is done, so the supervisor always knows which job is running now.
        for job in jobs:
            close_old_connections()
            report = executor.execute(job)
            close_old_connections()
            with concurrent.send_lock:
                channel.send(report.as_message())


def _say_last_words(channel: Channel, send_lock: threading.Lock, error: BaseException) -> None:
    """Send the supervisor the exception that is ending this child, if it still can.

    Best effort: the supervisor records the crash either way, from the exit code.
    The lock is only waited for briefly, in case the exception left it held.
    """
    locked = send_lock.acquire(timeout=1)
    try:
        with contextlib.suppress(Exception):
            channel.send((LAST_WORDS, describe_error(error)))
    finally:
        if locked:
            send_lock.release()
