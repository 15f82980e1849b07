"""jobqueue: a durable job queue for Django in which every job is a row in PostgreSQL."""

from jobqueue.exceptions import Snooze
from jobqueue.progress import aprogress, progress

__all__ = ["Snooze", "aprogress", "progress"]
