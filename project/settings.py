"""Settings for the jobqueue site, read from the environment with development defaults."""

import json
import os
from pathlib import Path
from typing import Any

import dj_database_url

from jobqueue.logs import wants_json
from project.embedded import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key" if DEBUG else "")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here rather than a CDN
    "jobqueue",
    "project",  # development commands (ensure_demo_user)
]

MIDDLEWARE = [
    # Drops persistent connections the server closed, without a query per request.
    "jobqueue.api.middleware.ConnectionCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the job page's static files from gunicorn (collectstatic first).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # django.contrib.messages' middleware, skipped on the API (JSON carries no messages).
    "jobqueue.api.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL names the server; without it an embedded PostgreSQL starts in
# JOBQUEUE_PGDATA (default .pgdata/ in the project folder) on first use.
DATABASES: dict[str, Any]
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    data_dir = Path(os.environ.get("JOBQUEUE_PGDATA", BASE_DIR / ".pgdata"))
    DATABASES = {"default": database_settings(data_dir)}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DJANGO_CONN_MAX_AGE", "60"))
# A connection pool per process (psycopg_pool) instead of one connection per thread:
# what bounds the connections of worker children running jobs on many threads
# (children x DJANGO_DB_POOL_SIZE, whatever THREADS is). Pooling excludes
# persistent connections, so it turns CONN_MAX_AGE off.
if pool_size := int(os.environ.get("DJANGO_DB_POOL_SIZE", "0")):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,
        "max_size": pool_size,
        "timeout": float(os.environ.get("DJANGO_DB_POOL_TIMEOUT", "30")),
    }
# Persistent connections are checked by jobqueue.api.middleware instead, which
# costs no query (Django's check sends SELECT 1 before every request's first query).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
# Django's own queries bind parameters on the client and are never prepared;
# this lets the API's few hot reads (jobqueue/api/sql.py) run as prepared
# statements on each persistent connection. DATABASE_PREPARED_STATEMENTS=0
# turns that off, here and on the workers' connections (needed behind a
# PgBouncer in transaction mode older than 1.21).
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
    5 if env_bool("DATABASE_PREPARED_STATEMENTS", True) else None
)
# Behind a pooler in transaction mode: DIRECT_DATABASE_URL reaches PostgreSQL
# itself, for the worker's own connection (LISTEN needs a session; see JOBQUEUE).
if os.environ.get("DIRECT_DATABASE_URL"):
    DATABASES["direct"] = {
        **dj_database_url.parse(os.environ["DIRECT_DATABASE_URL"]),
        "OPTIONS": DATABASES["default"]["OPTIONS"],
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKS = {
    "default": {
        "BACKEND": "jobqueue.backend.JobQueueBackend",
        "QUEUES": [],  # any queue name matching jobqueue's pattern
    }
}

# jobqueue's own settings; see jobqueue/conf.py for what each one means.
JOBQUEUE = {
    "DEFAULT_MAX_ATTEMPTS": int(os.environ.get("JOBQUEUE_DEFAULT_MAX_ATTEMPTS", "3")),
    "DEFAULT_TIMEOUT": env_float("JOBQUEUE_DEFAULT_TIMEOUT", 600),
    "HEARTBEAT_INTERVAL": env_float("JOBQUEUE_HEARTBEAT_INTERVAL", 5),
    "LEASE": env_float("JOBQUEUE_LEASE", 30),
    "POLL_INTERVAL": env_float("JOBQUEUE_POLL_INTERVAL", 1),
    "CANCEL_GRACE": env_float("JOBQUEUE_CANCEL_GRACE", 10),
    "BACKOFF_BASE": env_float("JOBQUEUE_BACKOFF_BASE", 2),
    "BACKOFF_MAX": env_float("JOBQUEUE_BACKOFF_MAX", 3600),
    "RETENTION_DAYS": env_float("JOBQUEUE_RETENTION_DAYS", 7),
    "MAX_RESULT_BYTES": int(os.environ.get("JOBQUEUE_MAX_RESULT_BYTES", str(16 * 1024 * 1024))),
    # Execution modes: each worker child's slots for async and thread jobs, and
    # queues whose jobs run in those modes, e.g. "webhooks=thread,crawl=async".
    "ASYNC_SLOTS": int(os.environ.get("JOBQUEUE_ASYNC_SLOTS", "100")),
    "THREADS": int(os.environ.get("JOBQUEUE_THREADS", "16")),
    "QUEUE_EXECUTION": dict(
        item.split("=", 1)
        for item in os.environ.get("JOBQUEUE_QUEUE_EXECUTION", "").split(",")
        if "=" in item
    ),
    # Watchers (event streams, ?wait= long-polls) per user and in all, per web process.
    "WATCH_PER_USER": int(os.environ.get("JOBQUEUE_WATCH_PER_USER", "50")),
    "WATCH_MAX": int(os.environ.get("JOBQUEUE_WATCH_MAX", "20000")),
    "WATCH_KEEPALIVE": env_float("JOBQUEUE_WATCH_KEEPALIVE", 15),
    "WATCH_SEND_TIMEOUT": env_float("JOBQUEUE_WATCH_SEND_TIMEOUT", 10),
    "LISTEN_DATABASE": "direct" if "direct" in DATABASES else "default",
    # Tasks that REST clients may submit, by dotted path. The demo tasks are
    # exposed in development only unless JOBQUEUE_EXPOSE_DEMO is set.
    "API_TASKS": (
        ["demo.echo", "demo.sleep", "demo.fail", "demo.crash", "demo.progress", "demo.wait"]
        if env_bool("JOBQUEUE_EXPOSE_DEMO", DEBUG)
        else []
    ),
    # Periodic jobs ({name: {"task", "cron", ...}}, see README "Periodic jobs"), here
    # read as JSON from the environment so that a deployment can declare them too.
    "PERIODIC": json.loads(os.environ.get("JOBQUEUE_PERIODIC", "{}")),
    # Global limits per queue, shared by every worker (see README "Limits"), as JSON,
    # e.g. JOBQUEUE_QUEUES='{"reports": {"concurrency": 2}, "mail": {"rate": "10/s"}}'.
    "QUEUES": json.loads(os.environ.get("JOBQUEUE_QUEUES", "{}")),
}

# The REST API (jobqueue.api): token or session auth, nothing anonymous,
# newest-first pages, a per-user submission rate (JOBQUEUE_API_SUBMIT_RATE).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's TokenAuthentication, with its lookup as one prepared statement.
        "jobqueue.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, as the API promises (the docs UI at /api/docs/ has its own renderer).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "jobqueue.api.negotiation.ContentNegotiation",
    "DEFAULT_PARSER_CLASSES": ["jobqueue.api.errors.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobqueue.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "jobs-submit": os.environ.get("JOBQUEUE_API_SUBMIT_RATE", "120/min"),
    },
}
# Largest request body the API accepts; larger ones get 413.
JOBQUEUE_API_MAX_BODY_BYTES = int(os.environ.get("JOBQUEUE_API_MAX_BODY_BYTES", str(256 * 1024)))
# GET /metrics requires "Authorization: Bearer <this>"; unset, it is open only in DEBUG.
JOBQUEUE_METRICS_TOKEN = os.environ.get("JOBQUEUE_METRICS_TOKEN", "")

SPECTACULAR_SETTINGS = {
    "TITLE": "jobqueue API",
    "DESCRIPTION": "Submit jobs to a durable PostgreSQL job queue, follow them, cancel them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # /api/docs/ loads Swagger UI from our own static files, so it works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ErrorCode": "jobqueue.api.serializers.errors.ERROR_CODES",
        "JobStatusEnum": "jobqueue.models.JobStatus",
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# One date-time format with seconds and the time zone (project/formats/en/formats.py).
FORMAT_MODULE_PATH = "project.formats"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "jobqueue.logs.json_formatter"},
    },
    # LOG_FORMAT=json: one JSON object per line, for the whole site (job events included).
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if wants_json("LOG_FORMAT") else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.tasks": {
            "handlers": ["console"],
            "level": os.environ.get("TASKS_LOG_LEVEL", "WARNING"),
            "propagate": False,
        },
    },
}
