"""ASGI entry point, the production server: gunicorn with uvicorn workers (gunicorn.conf.py).

Watching a job (``/api/jobs/{id}/events/``, ``?wait=N``) costs a coroutine;
every other request runs in Django's WSGI handler on a pool of
``GUNICORN_THREADS`` threads per process (see jobqueue.api.watching).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_wsgi_application()  # sets Django up before the app's modules load

from jobqueue.api.watching import WatchingApp  # noqa: E402

application = WatchingApp(django_application, threads=int(os.environ.get("GUNICORN_THREADS", "16")))
