"""gunicorn settings: threads, so that API long-polls (?wait=N) do not starve other requests.

Each long-poll holds one thread for up to 30 s while it waits on a NOTIFY, so
size threads for the number of clients polling at once. A worker process
runs Python on one core at a time, so one worker per core serves the short
requests (polls, submits); more processes only add switching. Every request
has a persistent database connection per thread (CONN_MAX_AGE).

Environment: GUNICORN_BIND, GUNICORN_WORKERS (default: one per core, at most
4), GUNICORN_THREADS (default 16), GUNICORN_ACCESSLOG (unset: no access log;
"-" logs every request to stdout, which costs about a fifth of a job poll's
CPU time).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(min(4, multiprocessing.cpu_count()))))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 60
graceful_timeout = 30
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
