"""Log formats: plain text lines (the default) or one JSON object per line.

``JOBQUEUE_LOG_FORMAT=json`` switches runworker's output, and ``LOG_FORMAT=json``
the whole site's (project/settings.py). The JSON comes from python-json-logger:
each record's message, level, logger and time, plus the fields a job event
carries (jobqueue/events.py) as top-level keys.
"""

import logging
import os

from pythonjsonlogger.json import JsonFormatter

PLAIN = "%(asctime)s %(levelname)s %(message)s"
JSON_FIELDS = "{levelname}{name}{message}"


def wants_json(*variables: str) -> bool:
    """Whether the first of ``variables`` that is set asks for JSON."""
    for name in variables:
        value = os.environ.get(name)
        if value:
            return value.strip().lower() == "json"
    return False


def json_formatter() -> logging.Formatter:
    """One JSON object per record, with an ISO time and the event's own fields."""
    return JsonFormatter(
        JSON_FIELDS,
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601 in UTC, with milliseconds
    )


def worker_formatter() -> logging.Formatter:
    """runworker's formatter: JSON when JOBQUEUE_LOG_FORMAT (or LOG_FORMAT) says so.

    Then the site's own handlers (the root's, Django's task log) are switched
    to JSON too, so that every line the worker writes parses.
    """
    if not wants_json("JOBQUEUE_LOG_FORMAT", "LOG_FORMAT"):
        return logging.Formatter(PLAIN)
    formatter = json_formatter()
    for name in ("", "django.tasks"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
    return formatter
