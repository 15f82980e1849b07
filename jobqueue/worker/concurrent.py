"""A child's concurrent jobs: async-mode jobs on an event loop, thread-mode jobs on a pool.

Both live beside the child's main thread, which keeps reading the channel
(and runs process-mode jobs itself, never while concurrent ones are in
flight: the supervisor sends a child one kind at a time). The event loop
runs in a thread of its own, started on the first async job; the thread
pool has as many threads as the supervisor may give this child thread jobs.

Reports go back on the channel as each job ends. Async jobs that end in the
same turn of the loop are sent in one write; a thread's report is sent by
that thread, under the same lock as the loop's writes.
"""

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from jobqueue.worker.channel import Channel
from jobqueue.worker.executor import Assignment, Executor
from jobqueue.worker.outcome import Report


class ConcurrentRunner:
    def __init__(self, executor: Executor, channel: Channel, *, threads: int) -> None:
        self.executor = executor
        self.channel = channel
        self.send_lock = threading.Lock()  # the main thread, the loop and the pool all send
        self.threads = ThreadPoolExecutor(max(1, threads), thread_name_prefix="jobqueue-thread")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}  # async jobs running, by job id
        self.in_flight: set[int] = set()  # every concurrent job sent and not yet reported
        self._unsent: list[Report] = []  # async reports of this loop turn

    def running(self) -> int | None:
        """Some job in flight, or None: what the fence's watchdog asks."""
        for job_id in self.in_flight:
            return job_id
        return None

    # ------------------------------------------------------------ from the main thread
    def start(self, jobs: list[Assignment]) -> None:
        """Begin ``jobs`` (all thread or all async mode, as the supervisor batches them)."""
        for job in jobs:
            self.in_flight.add(job.job_id)
        async_jobs = [job for job in jobs if job.execution == "async"]
        for job in jobs:
            if job.execution != "async":
                future = self.threads.submit(self.executor.execute_in_thread, job)
                future.add_done_callback(self._thread_done)
        if async_jobs:
            self.loop().call_soon_threadsafe(self._start_async, async_jobs)

    def cancel(self, job_id: int) -> None:
        """Cancel an async job now (its cancel was requested); thread jobs see it in progress()."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel, job_id)

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(
                target=self._loop.run_forever, name="jobqueue-loop", daemon=True
            ).start()
        return self._loop

    # ------------------------------------------------------------ in the loop's thread
    def _start_async(self, jobs: list[Assignment]) -> None:
        assert self._loop is not None
        for job in jobs:
            self.tasks[job.job_id] = self._loop.create_task(self._run(job))

    async def _run(self, job: Assignment) -> None:
        report = await self.executor.execute_async(job)
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
    def _thread_done(self, future: "Future[Report]") -> None:
        self._send([future.result()])

    def _send(self, reports: list[Report]) -> None:
        for report in reports:
            self.in_flight.discard(report.job_id)
        with self.send_lock:
            self.channel.send_many([report.as_message() for report in reports])
