"""jobqueue: a durable job queue for Django in which every job is a row in PostgreSQL."""

from jobqueue.progress import progress

__all__ = ["progress"]
