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
