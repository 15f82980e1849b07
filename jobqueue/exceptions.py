"""Exceptions of jobqueue."""


class JobQueueError(Exception):
    """Base class for jobqueue's exceptions. Do not raise directly."""


class JobCancelled(JobQueueError):
    """Cancellation of the running job was requested; raised by progress()."""


class JobTimeout(JobQueueError):
    """The job ran past its timeout."""


class WorkerLost(JobQueueError):
    """The worker running the job stopped heart-beating (killed, crashed or cut off)."""


class ChildCrashed(JobQueueError):
    """The child process running the job died (os._exit, a signal, out of memory, or a
    Python exception that escaped it, whose type, message and traceback the error keeps)."""


class InvalidJobState(JobQueueError):
    """The job is not in a state that allows the requested change."""


class LeaseLost(JobQueueError):
    """This attempt no longer holds its job: its lease ran out and the job was rescued,
    re-queued or finished elsewhere. Raised by progress(); nothing it writes is recorded."""


class Snooze(JobQueueError):
    """Raised by a task to run again ``seconds`` from now, without spending an attempt.

    For work that is not ready yet (a rate-limited API, a file still uploading):
    the job goes back to the queue, due in ``seconds``; its run is recorded in the
    job's history as snoozed, and no error is recorded.
    """

    def __init__(self, seconds: float) -> None:
        if not 0 <= seconds <= 366 * 86400:
            raise ValueError(f"snooze seconds must be between 0 and a year, got {seconds}")
        super().__init__(f"snoozed for {seconds:g} s")
        self.seconds = float(seconds)


class UnstorableResult(JobQueueError):
    """The task's return value cannot be stored as JSON in PostgreSQL (NaN or Infinity,
    a NUL character, a lone surrogate, or over the size limit), or the database refused
    it. No retry can fix that: the job fails at once, whatever attempts remain."""
