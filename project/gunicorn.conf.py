"""gunicorn settings of the ASGI server: ``gunicorn project.asgi -c project/gunicorn.conf.py``.

Each worker process is a uvicorn event loop (project.asgi_worker). Watchers
(event streams, ``?wait=N`` long-polls) wait there as coroutines, so tens of
thousands of them cost memory, not threads; every other request runs on the
process's pool of GUNICORN_THREADS threads, each with a persistent database
connection (CONN_MAX_AGE). A worker process runs Python on one core at a
time, so one worker per core serves the short requests (polls, submits); more
processes only add switching.

Environment: GUNICORN_BIND, GUNICORN_WORKERS (default: one per core, at most
4), GUNICORN_THREADS (default 16), GUNICORN_GRACEFUL_TIMEOUT (default 10: at
a restart, event streams still open then are cut, and their clients
reconnect), GUNICORN_ACCESSLOG (unset: no access log; "-" logs every request
to stdout, which costs about a fifth of a job poll's CPU time).
"""

import gc
import multiprocessing
import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(min(4, multiprocessing.cpu_count()))))
worker_class = "project.asgi_worker.UvicornWorker"
timeout = 60
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "10"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None


def post_worker_init(worker: Any) -> None:
    """Load every view now, then exclude what the app loaded from garbage collection.

    A full collection walks every object the process holds: about 45 ms on
    our 2-core machine once Django, DRF and the URLconf are loaded, and it
    holds the GIL, so every request in the process waits (it was the longest
    pause in the API's p99). Frozen, those objects are never walked again; a
    full collection then walks only what requests left behind (4-9 ms).
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and so every view module
    gc.freeze()
