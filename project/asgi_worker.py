"""The gunicorn worker class of the ASGI server: uvicorn's, with a bounded graceful shutdown."""

from typing import Any

from uvicorn_worker import UvicornWorker as BaseUvicornWorker


class UvicornWorker(BaseUvicornWorker):
    """uvicorn-worker's worker, ending open event streams when a restart's grace period is up.

    uvicorn waits for every open response before it stops, and an event
    stream lasts as long as its job: left alone, a restart would hang until
    gunicorn kills the process. uvicorn instead cancels what is still open
    after gunicorn's graceful_timeout, and clients reconnect (EventSource,
    ``Client.watch``) with Last-Event-ID to the new process.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout) - 1)
