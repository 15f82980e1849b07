"""A job's outcome as text PostgreSQL will store: a bad outcome fails the job, never the worker.

The supervisor writes results and errors of many jobs in one batched
statement. A value ``jsonb`` refuses there (NaN, a NUL character, a lone
surrogate) would fail that whole statement, again at every retry of it, and
take the other jobs' outcomes with it. So the child checks each outcome
before it reports it: a result that cannot be stored becomes the attempt's
``UnstorableResult`` failure, and an error's texts are cleaned and capped so
that an error entry can always be stored.
"""

import json
from collections.abc import Mapping
from traceback import format_exception
from typing import Any

from django.utils.json import normalize_json

from jobqueue.conf import get_settings
from jobqueue.exceptions import UnstorableResult
from jobqueue.jsonb import first_problem, may_be_refused, storable_text
from jobqueue.worker.outcome import class_path

# The JSON text json.dumps() writes (ASCII only: every non-ASCII character is a
# \uXXXX escape), except that NaN and the infinities, which jsonb refuses, raise.
_encode = json.JSONEncoder(allow_nan=False).encode

# Longest texts of a stored error, in characters (up to 6 bytes each as JSON).
# The message keeps its start; the traceback its end, where the raising frame
# and the exception are.
MAX_ERROR_TYPE_CHARS = 1024
MAX_ERROR_MESSAGE_CHARS = 8 * 1024
MAX_ERROR_TRACEBACK_CHARS = 64 * 1024


def encode_result(value: Any) -> str:
    """The task's return value as JSON text that jsonb accepts, ready for the job row.

    Raises UnstorableResult, saying what is wrong and where (``result['mean']``),
    for what jsonb would refuse (NaN, Infinity, a NUL character or a lone
    surrogate in a string or key), for values that are not JSON, and for text
    over ``JOBQUEUE["MAX_RESULT_BYTES"]``. A result without NUL or surrogate
    escapes costs json.dumps() plus two substring searches.
    """
    try:
        text = _encode(normalize_json(value))
    except RecursionError as e:
        raise UnstorableResult(
            "the task's return value cannot be stored: it is nested too deeply, or contains itself"
        ) from e
    except (TypeError, ValueError) as e:
        what = first_problem(value, "result") or str(e)
        raise UnstorableResult(f"the task's return value cannot be stored: {what}") from e
    limit = get_settings().MAX_RESULT_BYTES
    if len(text) > limit:  # ASCII: as many bytes as characters
        raise UnstorableResult(
            f"the task's return value cannot be stored: its JSON is {len(text)} bytes, "
            f"over the limit of {limit} (JOBQUEUE['MAX_RESULT_BYTES']); store large "
            "results elsewhere and return a reference"
        )
    if may_be_refused(text) and (problem := first_problem(value, "result")):
        raise UnstorableResult(f"the task's return value cannot be stored: {problem}")
    return text


def describe_error(error: BaseException) -> dict[str, str]:
    """The attempt's error entry for ``error``: class path, message and traceback, storable.

    Does not raise for a badly behaved exception: one whose ``__str__`` raises
    gets the message ``<exception str() failed>``, as format_exception() shows it.
    """
    cls = type(error)
    try:
        message = str(error)
    except Exception:
        message = "<exception str() failed>"
    return storable_error(
        {
            "type": class_path(cls),
            "message": message,
            "traceback": "".join(format_exception(error)),
        }
    )


def storable_error(error: Mapping[str, str]) -> dict[str, str]:
    """An error entry's texts (``type``, ``message``, ``traceback``) as jsonb stores them.

    Whatever an exception's text holds, its error can be recorded: NUL and
    surrogates are spelled out (``jobqueue.jsonb.storable_text``), and each
    text is capped (``MAX_ERROR_*_CHARS``), the traceback keeping its end.
    """
    return {key: _storable_text(key, text) for key, text in error.items()}


_CAPS = {"type": MAX_ERROR_TYPE_CHARS, "traceback": MAX_ERROR_TRACEBACK_CHARS}


def _storable_text(key: str, text: str) -> str:
    text = storable_text(text)
    cap = _CAPS.get(key, MAX_ERROR_MESSAGE_CHARS)
    if len(text) <= cap:
        return text
    if key == "traceback":
        marker = "[{} characters cut]\n"
        kept = cap - len(marker.format(len(text)))
        return marker.format(len(text) - kept) + text[-kept:]
    marker = " [{} more characters]"
    kept = cap - len(marker.format(len(text)))
    return text[:kept] + marker.format(len(text) - kept)
