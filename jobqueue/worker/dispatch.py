"""The dispatcher: how many jobs to claim, and which child runs each one claimed.

It keeps the claimed jobs that wait for a child (the buffer) and what it has
learnt of each task's run time, and decides two things from them: the demand
of the next claim, and which jobs go to which child now. It never touches the
database; the supervisor claims what it asks for and hands it the rows.
"""

from collections import deque
from collections.abc import Iterable

from jobqueue.queries import ClaimedJob
from jobqueue.worker.children import Child, InHand
from jobqueue.worker.execution import CONCURRENT, Executions
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
# Concurrent jobs (thread, async) end in waves, hundreds at a time: a slot that
# waited for the ack-and-claim round trip after its job would stay idle for it.
# Half the slots' worth claimed ahead lets the next claim overlap the running wave.
CONCURRENT_AHEAD = 0.5


class Dispatcher:
    def __init__(
        self, concurrency: int, executions: Executions, *, expected: Iterable[str] = ()
    ) -> None:
        self.concurrency = concurrency
        self.executions = executions  # how each job runs, and each child's slots per mode
        self.buffer: deque[InHand] = deque()  # claimed, waiting for a child
        self.mean_duration = 1.0  # seconds; assume long jobs until shown otherwise
        self.task_durations: dict[str, float] = {}  # task path: mean seconds per job
        self.claimed = 0
        # The concurrent modes of the jobs claimed so far, and those the worker was started
        # for (--async-slots, --threads), so that its first claim fills their slots.
        self.modes_seen: set[str] = set(expected)

    def capacity(self) -> int:
        """Jobs the children can run at once: one each, or their slots once concurrent jobs
        have been seen (until then a worker claims no more than process mode runs)."""
        per_child = max([1, *(self.executions.slots[m] for m in self.modes_seen)])
        return self.concurrency * per_child

    def demand(self, children: list[Child], *, limit: int | None) -> int:
        """How many jobs to claim now: free slots, plus a buffer sized for short jobs (or,
        with concurrent slots, half the slots: CONCURRENT_AHEAD).

        The buffer is refilled only once it is half empty, so that short jobs
        are claimed in large batches rather than one statement per job; for
        the same reason concurrent slots are refilled an eighth at a time.
        ``limit`` caps the total ever claimed (--max-jobs).
        """
        n = self.capacity()
        short = min(MAX_BUFFER_PER_CHILD * n, int(BUFFER_SECONDS / max(self.mean_duration, 1e-4)))
        target = max(short, int(n * CONCURRENT_AHEAD)) if self.modes_seen else short
        in_hand = sum(len(c.jobs) + len(c.flying) for c in children) + len(self.buffer)
        if self.buffer and len(self.buffer) > target // 2:
            return 0
        demand = n + target - in_hand
        if self.modes_seen and in_hand and demand < n // 8:
            return 0
        if self.modes_seen and self._process_waiting() > self.concurrency + short:
            return 0  # slots for concurrent jobs must not hoard process-mode ones
        if limit is not None:
            demand = min(demand, limit - self.claimed)
        return max(0, demand)

    def free(self, children: list[Child]) -> int:
        """Jobs the children could start right now: how many of a limited queue to claim."""
        in_hand = sum(len(c.jobs) + len(c.flying) for c in children) + len(self.buffer)
        return max(0, self.capacity() - in_hand)

    def soon(self, children: list[Child], *, within: float) -> int:
        """Jobs the children could start ``within`` seconds, by recent mean run time: how
        many of a rate-limited queue to claim (each must start by a deadline)."""
        in_hand = sum(len(c.jobs) + len(c.flying) for c in children) + len(self.buffer)
        rounds = 1 + int(within / max(self.mean_duration, 1e-4))
        return max(0, self.capacity() * rounds - in_hand)

    def _process_waiting(self) -> int:
        return sum(1 for job in self.buffer if job.assignment.execution == "process")

    def take(self, rows: Iterable[ClaimedJob], *, start_by: dict[str, float] | None = None) -> int:
        """Buffer freshly claimed rows (queries.claimed's); returns how many.

        ``start_by`` gives, per rate-limited queue, the monotonic time its jobs must
        start by, or go back unstarted (jobqueue/scheduling/limits.py).
        """
        start_by = start_by or {}
        taken = 0
        for job in rows:
            execution = self.executions.of(job.task, job.queue)
            if execution != "process":
                self.modes_seen.add(execution)
            self.buffer.append(
                InHand(
                    assignment=Assignment(
                        job.id,
                        job.lease_token,
                        job.task,
                        job.args_json,
                        job.kwargs_json,
                        job.attempts,
                        job.timeout_seconds,
                        execution,
                        start_by.get(job.queue),
                    ),
                    max_attempts=job.max_attempts,
                    queue=job.queue,
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
        """Hand buffered jobs to children, one message per child and mode.

        Jobs are taken in claim order, each by a child that can start it now
        (or, for a short process-mode job, soon); a job no child can take waits,
        and so do the later ones of its mode, while other modes go on.
        """
        if not self.buffer:
            return
        usable = [c for c in children if c.kill_reason is None and not c.retiring and not c.alone]
        taken: dict[int, str] = {}  # child index: the mode of the jobs it was given just now
        process = _ProcessRoom(self, usable, taken)
        concurrent = {m: _SlotRoom(m, self.executions.slots[m], usable, taken) for m in CONCURRENT}
        alone = _AloneRoom(usable, taken)
        batches: dict[tuple[int, str], list[InHand]] = {}
        kept: list[InHand] = []
        full: set[str] = set()
        while self.buffer and len(full) < 2 + len(CONCURRENT):
            job = self.buffer.popleft()
            mode = "alone" if job.suspect else job.assignment.execution
            room: _ProcessRoom | _SlotRoom | _AloneRoom
            if mode == "alone":
                room = alone
            elif mode == "process":
                room = process
            else:
                room = concurrent[mode]
            i = None if mode in full else room.place(job)
            if i is None:
                full.add(mode)
                kept.append(job)
                continue
            batches.setdefault((i, mode), []).append(job)
        self.buffer.extendleft(reversed(kept))
        for (i, _), batch in batches.items():
            try:
                usable[i].assign(batch)
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


class _ProcessRoom:
    """Which child takes a process-mode job: the one with the fewest in hand.

    An idle child takes the next job whatever it is. A busy one takes more
    only while all it holds is expected to take under PIPELINE_SECONDS, and
    while the arguments waiting at it stay under PIPELINE_BYTES. Children
    running concurrent jobs take none.
    """

    def __init__(
        self, dispatcher: Dispatcher, children: list[Child], taken: dict[int, str]
    ) -> None:
        self.dispatcher = dispatcher
        self.taken = taken
        # child index: (jobs in hand, seconds of work expected, bytes it may still take)
        self.room: dict[int, tuple[int, float, int | None]] = {}
        self.allowance = {i: child.allowance for i, child in enumerate(children)}
        for i, child in enumerate(children):
            if not child.flying and len(child.jobs) < MAX_PIPELINE and child.allowance != 0:
                expected = sum(dispatcher.expected(job) for job in child.jobs)
                self.room[i] = (len(child.jobs), expected, child.free_bytes(PIPELINE_BYTES))

    def place(self, job: InHand) -> int | None:
        cost, size = self.dispatcher.expected(job), job.assignment.size
        while self.room:
            i = min(self.room, key=lambda k: self.room[k][0])
            in_hand, expected, free_bytes = self.room.pop(i)
            if self.taken.setdefault(i, "process") != "process":
                continue  # just given concurrent jobs
            if in_hand and (
                expected + cost > PIPELINE_SECONDS or (free_bytes is not None and size > free_bytes)
            ):
                continue  # this child is full until it finishes what it has
            allowance = self.allowance[i]
            if allowance is not None:
                self.allowance[i] = allowance = allowance - 1
            if in_hand + 1 < MAX_PIPELINE and allowance != 0:
                left = None if free_bytes is None else free_bytes - size
                self.room[i] = (in_hand + 1, expected + cost, left)
            return i
        return None


class _SlotRoom:
    """Which child takes a job of a concurrent mode: the one with the most free slots.

    A child runs concurrent jobs only while it runs no process-mode job, and
    of one mode at a time; nothing is queued behind a running job.
    """

    def __init__(self, mode: str, slots: int, children: list[Child], taken: dict[int, str]) -> None:
        self.mode = mode
        self.taken = taken
        self.free: dict[int, int] = {
            i: min(slots - len(child.flying), slots if child.allowance is None else child.allowance)
            for i, child in enumerate(children)
            if not child.jobs
            and child.flying_mode in (None, mode)
            and len(child.flying) < slots
            and child.allowance != 0
        }

    def place(self, job: InHand) -> int | None:
        while self.free:
            i = max(self.free, key=self.free.__getitem__)
            if self.taken.setdefault(i, self.mode) != self.mode:
                del self.free[i]  # just given jobs of another mode
                continue
            self.free[i] -= 1
            if not self.free[i]:
                del self.free[i]
            return i
        return None


class _AloneRoom:
    """Which child takes a suspect, a job that was in flight when a shared child crashed
    (InHand.suspect): an idle child given nothing else, until the suspect is done."""

    def __init__(self, children: list[Child], taken: dict[int, str]) -> None:
        self.taken = taken
        self.idle = [i for i, child in enumerate(children) if not child.busy()]

    def place(self, job: InHand) -> int | None:
        while self.idle:
            i = self.idle.pop(0)
            if self.taken.setdefault(i, "alone") == "alone":
                self.taken[i] = "given"  # no second suspect, nor any job, beside this one
                return i
        return None
