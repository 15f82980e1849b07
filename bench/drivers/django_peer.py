"""What the two django.tasks peers share: settings from a DSN, the no-op task, the worker process.

Settings are configured in code (no project on disk), and the worker is the
peer's own management command run through ``django_peer.py worker APP ...``
so that it sees the same settings as the enqueuing side.
"""

import os
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

DRIVERS = os.path.dirname(os.path.abspath(__file__))


def configure(dsn: str, app: str, backend: str) -> None:
    """Django settings for a peer: its app installed, its backend as TASKS' default."""
    import django
    from django.conf import settings

    url = urlsplit(dsn)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", app],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.path.lstrip("/"),
                "USER": unquote(url.username or "postgres"),
                "PASSWORD": unquote(url.password or ""),
                "HOST": unquote(url.hostname or ""),
                "PORT": str(url.port or ""),
                # Persistent connections, as a production deployment would use.
                "CONN_MAX_AGE": 600,
            }
        },
        TASKS={"default": {"BACKEND": backend, "QUEUES": []}},
        LOGGING_CONFIG=None,
    )
    django.setup()


def noop_task() -> Any:
    """The no-op task, defined once settings exist (django.tasks validates at decoration)."""
    import peer_tasks

    return peer_tasks.noop


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def worker_command(dsn: str, app: str, backend: str, *command: str) -> list[str]:
    """A worker process: this module configures settings and runs the peer's command."""
    return [sys.executable, os.path.join(DRIVERS, "django_peer.py"), dsn, app, backend, *command]


if __name__ == "__main__":  # django_peer.py DSN APP BACKEND COMMAND [ARGS...]
    sys.path.insert(0, DRIVERS)
    dsn_, app_, backend_, *argv = sys.argv[1:]
    configure(dsn_, app_, backend_)
    from django.core.management import call_command

    call_command(*argv)
