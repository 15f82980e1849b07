"""gunicorn settings: threads, so that API long-polls (?wait=N) do not starve other requests.

Each long-poll holds one thread for up to 30 s while it waits on a NOTIFY, so
size threads for the number of clients polling at once. Environment:
GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_THREADS.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(min(4, multiprocessing.cpu_count()))))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 60
graceful_timeout = 30
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
