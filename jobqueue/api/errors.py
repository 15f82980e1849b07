"""Error bodies, and the request size limit: every 4xx says what to change."""

from io import BytesIO
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

from jobqueue.backend import MAX_ARGUMENT_DEPTH

# Largest request body the API parses, in bytes (JOBQUEUE_API_MAX_BODY_BYTES).
DEFAULT_MAX_BODY_BYTES = 256 * 1024


def max_body_bytes() -> int:
    return int(getattr(settings, "JOBQUEUE_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


class PayloadTooLarge(APIException):
    """The request body is over the size limit."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is over the limit of {limit} bytes: send smaller arguments "
            "(large inputs belong in storage the task reads, passed by reference)."
        )


class Conflict(APIException):
    """The job is not in a state that allows the action."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class LimitedJSONParser(JSONParser):
    """JSONParser that refuses bodies over the limit, also when no Content-Length was sent."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = max_body_bytes()
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge(limit)
        try:
            return super().parse(BytesIO(body), media_type, parser_context)
        except RecursionError as e:  # thousands of levels: past what json.loads can nest
            raise ParseError(
                "JSON parse error - lists and objects nest more than "
                f"{MAX_ARGUMENT_DEPTH} levels deep, the limit of task arguments."
            ) from e


def _flatten(errors: Any, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        return [
            line
            for key, value in errors.items()
            for line in _flatten(value, "" if key == "non_field_errors" else f"{prefix}{key}: ")
        ]
    if isinstance(errors, list):
        return [line for item in errors for line in _flatten(item, prefix)]
    return [f"{prefix}{errors}"]


def error_code(exc: Exception) -> str:
    """The code of an exception DRF's handler answers (Django's own two included)."""
    if isinstance(exc, Http404):
        return "not_found"
    if isinstance(exc, DjangoPermissionDenied):
        return "permission_denied"
    return str(getattr(exc, "default_code", "invalid"))


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every body reshaped to ``{"detail", "code", "errors"}``.

    ``detail`` is one sentence a person can act on; ``code`` names the kind
    of error for programs (one of ``serializers.ERROR_CODES``); ``errors`` keeps DRF's
    per-field lists for input errors.
    """
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    code = error_code(exc)
    if isinstance(data, dict) and set(data) == {"detail"}:
        response.data = {"detail": str(data["detail"]), "code": code}
    else:
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        response.data = {"detail": "; ".join(_flatten(errors)), "code": code, "errors": errors}
    return response
