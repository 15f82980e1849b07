"""What the OpenAPI schema says beyond the serializers: parameters, headers, error responses.

The views' ``@extend_schema`` declarations use these, so that every response
an operation can give, and every bound the API enforces, is in the served
document (``/api/schema/``, committed as ``docs/openapi.yaml``). The two
extensions below register themselves when the views import this module.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from jobqueue.api.errors import DEFAULT_MAX_BODY_BYTES
from jobqueue.api.serializers.errors import ErrorSerializer
from jobqueue.api.serializers.jobs import JobSerializer
from jobqueue.api.tasks import exposed_tasks
from jobqueue.models import JobStatus

# Longest ?wait= a request may hold, in seconds.
MAX_WAIT_SECONDS = 30
# Largest id PostgreSQL's bigint holds; longer ids are malformed (404), not a 500.
MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 200


class ExposedTaskNameExtension(OpenApiSerializerFieldExtension):
    """A submission's ``task``: an enum of the names exposed when the schema is served."""

    target_class = "jobqueue.api.serializers.jobs.ExposedTaskNameField"

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        if names := list(exposed_tasks()):
            return {"type": "string", "enum": names}
        return {"type": "string", "maxLength": 255}


class ClosedSerializerExtension(OpenApiSerializerExtension):
    """A submission refuses unknown fields (400 naming them): ``additionalProperties: false``."""

    target_class = "jobqueue.api.serializers.jobs.JobSubmitSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        return {**schema, "additionalProperties": False}


ERRORS = {
    400: "Bad input; detail says what to change, errors which field.",
    401: "Not authenticated (no or an unknown token).",
    403: "Not allowed: staff only, or another user's job without the staff permission for "
    "the action, or a session request without its CSRF token.",
    404: "No such job visible to the caller (also a malformed id).",
    409: "The job's state does not allow it.",
    413: f"The request body is over JOBQUEUE_API_MAX_BODY_BYTES "
    f"({DEFAULT_MAX_BODY_BYTES} bytes by default).",
    415: "The body is not application/json.",
    429: "Too many submissions; retry after Retry-After seconds.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error responses of an operation, each with the one error body."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERRORS[code]) for code in codes}


JOB_ID = OpenApiParameter(
    "id",
    {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
    location=OpenApiParameter.PATH,
    description="The job's id, as POST /api/jobs/ returned it. Anything else is a 404.",
)
WAIT_PARAM = OpenApiParameter(
    "wait",
    {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
    description=f"Hold the request up to this many seconds (0 to {MAX_WAIT_SECONDS}) "
    "until the job's status or progress changes; 400 outside that range.",
)
READY_PARAM = OpenApiParameter(
    "ready",
    OpenApiTypes.BOOL,
    description="Readiness: also check that every migration is applied (503 while not).",
)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},
    location=OpenApiParameter.HEADER,
    description="Same as the body's idempotency_key; when both are sent they must be equal "
    "(400 otherwise). A key already used by the caller answers 200 with that first job, "
    "whatever else the body says.",
)
LOCATION_HEADER = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    location=OpenApiParameter.HEADER,
    response=[202],
    description="The new job's URL.",
)
RETRY_AFTER_HEADER = OpenApiParameter(
    "Retry-After",
    {"type": "integer", "minimum": 0},
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until a submission is allowed again.",
)
LIST_PARAMETERS = [
    OpenApiParameter("cursor", OpenApiTypes.STR, description="From next or previous; 400 if not."),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"Jobs per page, 1 to {MAX_PAGE_SIZE} (default 50).",
    ),
    OpenApiParameter("status", OpenApiTypes.STR, enum=JobStatus.values),
    OpenApiParameter("queue", {"type": "string", "pattern": "^[^\\x00]*$"}),
    OpenApiParameter("task", {"type": "string", "pattern": "^[^\\x00]*$"}),
]
JOB_ACTION_RESPONSES = {
    200: OpenApiResponse(JobSerializer, description="Done."),
    202: OpenApiResponse(JobSerializer, description="Requested; the running job stops soon."),
    **errors(401, 403, 404, 409),
}
LAST_EVENT_ID_HEADER = OpenApiParameter(
    "Last-Event-ID",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="The id of the last event received; sent by EventSource when it reconnects. "
    "If the job has not changed since, no event repeats it.",
)
# One server-sent event of the events route, as schemathesis and OpenAPI tools read a stream.
JOB_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "data": {
            "type": "string",
            "description": "The job as JSON text, as GET /api/jobs/{id}/ returns it.",
        },
        "id": {"type": "string", "description": "The state's id, for Last-Event-ID."},
        "event": {"type": "string", "enum": ["message"]},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting."},
    },
    "required": ["data"],
}
WATCH_LIMITS = {
    429: OpenApiResponse(
        ErrorSerializer, description="Too many watchers for this user; see Retry-After."
    ),
    503: OpenApiResponse(
        ErrorSerializer, description="The server watches as many jobs as it can; Retry-After."
    ),
}
