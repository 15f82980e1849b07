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
    """The child process running the job died (os._exit, a signal, out of memory)."""


class InvalidJobState(JobQueueError):
    """The job is not in a state that allows the requested change."""


class LeaseLost(JobQueueError):
    """This attempt no longer holds its job: its lease ran out and the job was rescued,
    re-queued or finished elsewhere. Raised by progress(); nothing it writes is recorded."""


class UnstorableResult(JobQueueError):
    """The task's return value cannot be stored as JSON in PostgreSQL (NaN or Infinity,
    a NUL character, a lone surrogate, or over the size limit). The attempt fails."""
