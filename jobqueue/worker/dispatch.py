"""The dispatcher: how many jobs to claim, and which child runs each one claimed.

It keeps the claimed jobs that wait for a child (the buffer) and what it has
learnt of each task's run time, and decides two things from them: the demand
of the next claim, and which jobs go to which child now. It never touches the
database; the supervisor claims what it asks for and hands it the rows.
"""

from collections import deque
from collections.abc import Iterable

from jobqueue.worker.children import Child, InHand
from jobqueue.worker.executor import Assignment

# How much work, in seconds of recent mean run time, to keep claimed ahead of
# the children. Short jobs get a buffer so that claiming is amortised; jobs
# of a second or more get none, so that no job waits here while another
# worker sits idle.
BUFFER_SECONDS = 0.05
MAX_BUFFER_PER_CHILD = 100
# Work sent ahead to one child, in seconds of its tasks' mean run times: enough
# short jobs to cover a database round trip of the supervisor on a busy
# machine. A job of a task not yet seen, or of a task that takes longer, goes
# only to an idle child, and nothing is queued behind it.
PIPELINE_SECONDS = 0.02
UNSEEN_TASK_SECONDS = 1.0
MAX_PIPELINE = 64
# Bytes (UTF-8, as they travel) of arguments a busy child may hold unread: jobs
# sent ahead of time wait there, so this bounds what a job that runs long holds
# up. Sends never block whatever this is (the supervisor's channel ends queue
# what a socket cannot take), so it is about waiting, not about stalling.
PIPELINE_BYTES = 64 * 1024


class Dispatcher:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.buffer: deque[InHand] = deque()  # claimed, waiting for an idle child
        self.mean_duration = 1.0  # seconds; assume long jobs until shown otherwise
        self.task_durations: dict[str, float] = {}  # task path: mean seconds per job
        self.claimed = 0

    def demand(self, children: list[Child], *, limit: int | None) -> int:
        """How many jobs to claim now: free children, plus a buffer sized for short jobs.

        The buffer is refilled only once it is half empty, so that short jobs
        are claimed in large batches rather than one statement per job.
        ``limit`` caps the total ever claimed (--max-jobs).
        """
        n = self.concurrency
        target = min(MAX_BUFFER_PER_CHILD * n, int(BUFFER_SECONDS / max(self.mean_duration, 1e-4)))
        in_hand = sum(len(c.jobs) for c in children) + len(self.buffer)
        if self.buffer and len(self.buffer) > target // 2:
            return 0
        demand = n + target - in_hand
        if limit is not None:
            demand = min(demand, limit - self.claimed)
        return max(0, demand)

    def take(self, rows: Iterable[tuple]) -> int:
        """Buffer freshly claimed rows (queries.CLAIM's columns); returns how many."""
        taken = 0
        for (
            job_id,
            task,
            args_json,
            kwargs_json,
            attempts,
            max_attempts,
            timeout,
            _priority,
            _scheduled_at,
            queue,
            token,
        ) in rows:
            self.buffer.append(
                InHand(
                    assignment=Assignment(
                        job_id, token, task, args_json, kwargs_json, attempts, timeout
                    ),
                    max_attempts=max_attempts,
                    queue=queue,
                )
            )
            taken += 1
        self.claimed += taken
        return taken

    def learn(self, task: str, duration: float) -> None:
        """A job of ``task`` ran ``duration`` seconds: update the means."""
        self.mean_duration = 0.8 * self.mean_duration + 0.2 * duration
        known = self.task_durations.get(task, duration)
        self.task_durations[task] = 0.8 * known + 0.2 * duration

    def dispatch(self, children: list[Child]) -> None:
        """Share buffered jobs among the children with the fewest in hand, one message each.

        An idle child takes the next job whatever it is. A busy one takes more
        only while all it holds is expected to take under PIPELINE_SECONDS, and
        while the arguments waiting at it stay under PIPELINE_BYTES.
        """
        if not self.buffer:
            return
        # child index: (jobs in hand, seconds of work expected, bytes it may still take)
        room: dict[int, tuple[int, float, int | None]] = {}
        for i, child in enumerate(children):
            if child.kill_reason is None and len(child.jobs) < MAX_PIPELINE:
                expected = sum(self.expected(job) for job in child.jobs)
                room[i] = (len(child.jobs), expected, child.free_bytes(PIPELINE_BYTES))
        batches: dict[int, list[InHand]] = {}
        while self.buffer and room:
            i = min(room, key=lambda k: room[k][0])
            in_hand, expected, free_bytes = room.pop(i)
            job = self.buffer[0]
            cost, size = self.expected(job), job.assignment.size
            if in_hand and (
                expected + cost > PIPELINE_SECONDS or (free_bytes is not None and size > free_bytes)
            ):
                continue  # this child is full until it finishes what it has
            batches.setdefault(i, []).append(self.buffer.popleft())
            if in_hand + 1 < MAX_PIPELINE:
                left = None if free_bytes is None else free_bytes - size
                room[i] = (in_hand + 1, expected + cost, left)
        for i, batch in batches.items():
            try:
                children[i].assign(batch)
            except OSError:  # the child died; its death is handled when its socket reads EOF
                self.buffer.extendleft(reversed(batch))

    def expected(self, job: InHand) -> float:
        """Seconds ``job`` is expected to run: its task's mean so far."""
        return self.task_durations.get(job.assignment.task, UNSEEN_TASK_SECONDS)

    def drop(self, job_ids: set[int]) -> list[InHand]:
        """Take the buffered jobs of ``job_ids`` out of the buffer; returns them."""
        dropped = [job for job in self.buffer if job.assignment.job_id in job_ids]
        for job in dropped:
            self.buffer.remove(job)
        return dropped
