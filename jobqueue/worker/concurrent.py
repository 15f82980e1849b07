"""A child's concurrent jobs: async-mode jobs on an event loop, thread-mode jobs on a pool.

Both live beside the child's main thread, which keeps reading the channel
(and runs process-mode jobs itself, never while concurrent ones are in
flight: the supervisor sends a child one kind at a time). The event loop
runs in a thread of its own, started on the first async job; the thread
pool has as many threads as the supervisor may give this child thread jobs.

Reports go back on the channel as each job ends. Async jobs that end in the
same turn of the loop are sent in one write; a thread's report is sent by
that thread, under the same lock as the loop's writes.

Every job started ends in exactly one report: whatever escapes the executor
becomes the job's failure. A child whose event loop stopped, or whose pool
thread could not send a report, can no longer report its other jobs: it
exits, and the supervisor counts it as crashed.
"""

import asyncio
import functools
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from jobqueue.worker.channel import Channel
from jobqueue.worker.executor import Assignment, Executor, unexpected_failure
from jobqueue.worker.outcome import Report

logger = logging.getLogger("jobqueue.worker")

# The exit code of a child that can no longer report its concurrent jobs.
EXIT_BROKEN = 70


class ConcurrentRunner:
    def __init__(self, executor: Executor, channel: Channel, *, threads: int) -> None:
        self.executor = executor
        self.channel = channel
        self.send_lock = threading.Lock()  # the main thread, the loop and the pool all send
        self.threads = ThreadPoolExecutor(max(1, threads), thread_name_prefix="jobqueue-thread")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}  # async jobs running, by job id
        # Every concurrent job sent and not yet reported: changed by the main thread, the
        # loop and the pool threads, read by the fence's watchdog, so only under its lock.
        self.in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()
        self._unsent: list[Report] = []  # async reports of this loop turn

    def running(self) -> int | None:
        """Some job in flight, or None: what the fence's watchdog asks."""
        with self._in_flight_lock:
            return next(iter(self.in_flight), None)

    # ------------------------------------------------------------ from the main thread
    def start(self, jobs: list[Assignment]) -> None:
        """Begin ``jobs`` (all thread or all async mode, as the supervisor batches them)."""
        with self._in_flight_lock:
            self.in_flight.update(job.job_id for job in jobs)
        async_jobs = [job for job in jobs if job.execution == "async"]
        for job in jobs:
            if job.execution != "async":
                future = self.threads.submit(self.executor.execute_in_thread, job)
                future.add_done_callback(functools.partial(self._thread_done, job=job))
        if async_jobs:
            self.loop().call_soon_threadsafe(self._start_async, async_jobs)

    def cancel(self, job_id: int) -> None:
        """Cancel an async job now (its cancel was requested); thread jobs see it in progress()."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel, job_id)

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._serve_loop, name="jobqueue-loop", daemon=True).start()
        return self._loop

    def _serve_loop(self) -> None:
        """The loop's thread. Nothing stops the loop while the child lives, so if it stops,
        the async jobs on it will never report: the child exits as crashed."""
        assert self._loop is not None
        try:
            self._loop.run_forever()
        except BaseException:
            logger.exception("the child's event loop died")
        _exit_broken("the child's event loop stopped")

    # ------------------------------------------------------------ in the loop's thread
    def _start_async(self, jobs: list[Assignment]) -> None:
        assert self._loop is not None
        for job in jobs:
            self.tasks[job.job_id] = self._loop.create_task(self._run(job))

    async def _run(self, job: Assignment) -> None:
        try:
            report = await self.executor.execute_async(job)
        except BaseException as e:  # past the executor's own handling: still one report
            logger.exception("job %s: the async executor raised", job.job_id)
            report = unexpected_failure(job, e)
        del self.tasks[job.job_id]
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._send_async)
        self._unsent.append(report)

    def _send_async(self) -> None:
        reports, self._unsent = self._unsent, []
        self._send(reports)

    def _cancel(self, job_id: int) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------ in a pool thread
    def _thread_done(self, future: "Future[Report]", job: Assignment) -> None:
        error = future.exception()
        if error is not None:  # past the executor's own handling: still one report
            logger.error("job %s: the thread executor raised", job.job_id, exc_info=error)
        report = future.result() if error is None else unexpected_failure(job, error)
        try:
            self._send([report])
        except BaseException:
            # A callback's exception would be logged and dropped by concurrent.futures,
            # and with it this job's report.
            logger.exception("job %s: its report could not be sent", job.job_id)
            _exit_broken("a pool thread could not send a report")

    def _send(self, reports: list[Report]) -> None:
        with self._in_flight_lock:
            for report in reports:
                self.in_flight.discard(report.job_id)
        with self.send_lock:
            self.channel.send_many([report.as_message() for report in reports])


def _exit_broken(why: str) -> None:
    logger.critical("%s: this child exits (code %d)", why, EXIT_BROKEN)
    os._exit(EXIT_BROKEN)
