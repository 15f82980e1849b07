"""The jobs resource: submit, list, read, wait on, watch, cancel and retry jobs."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from django.db import IntegrityError, connections, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.tasks.exceptions import InvalidTask
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from jobqueue import queries
from jobqueue.api.errors import Conflict, LimitedJSONParser
from jobqueue.api.permissions import IsOwnerOrPermittedStaff, sees_all_jobs
from jobqueue.api.reads import JobAndPosition, job_reader, poll_reader
from jobqueue.api.schema import (
    IDEMPOTENCY_HEADER,
    JOB_ACTION_RESPONSES,
    JOB_EVENT_SCHEMA,
    JOB_ID,
    LAST_EVENT_ID_HEADER,
    LIST_PARAMETERS,
    LOCATION_HEADER,
    MAX_ID,
    MAX_PAGE_SIZE,
    MAX_WAIT_SECONDS,
    RETRY_AFTER_HEADER,
    WAIT_PARAM,
    WATCH_LIMITS,
    errors,
)
from jobqueue.api.serializers.errors import ErrorSerializer
from jobqueue.api.serializers.jobs import (
    JobSerializer,
    JobSubmitSerializer,
    SubmittedJobSerializer,
    job_data,
)
from jobqueue.api.stream import GRANT_KEY, EventStreamRenderer, WatchGrant, event_id
from jobqueue.api.throttling import SUBMIT_SCOPE, SubmitRateThrottle
from jobqueue.backend import JobQueueBackend, JobQueueTask
from jobqueue.models import Job, JobStatus, change_jobs

NOT_FOUND = "No such job among those you may see: job ids are the numbers POST /api/jobs/ returns."
# How a refused cancel or retry names the job's state.
STATE_PHRASES: dict[str, str] = {
    JobStatus.QUEUED: "is queued",
    JobStatus.RUNNING: "is running",
    JobStatus.SUCCEEDED: "has succeeded",
    JobStatus.FAILED: "has failed",
    JobStatus.CANCELLED: "was cancelled",
}


class JobPagination(CursorPagination):
    """Newest first, by id: no COUNT over a user's history, stable under inserts.

    A page size or cursor the client cannot have meant is a 400 naming it,
    where DRF would fall back to the default size or answer 404.
    """

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get("page_size")
        if raw is None:
            return self.page_size
        size = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 4 else 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            message = f"Must be a whole number from 1 to {MAX_PAGE_SIZE}."
            raise ValidationError({"page_size": [message]})
        return size

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
        else:
            if cursor is None or cursor.position is None or cursor.position.isdigit():
                return cursor
        raise ValidationError(
            {"cursor": ["Not a cursor of this API: use a page's next or previous link."]}
        )


class JobViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Submit jobs, follow them, cancel and retry them. Jobs are never deleted here."""

    serializer_class = JobSerializer
    permission_classes = [IsAuthenticated, IsOwnerOrPermittedStaff]
    pagination_class = JobPagination
    parser_classes = [LimitedJSONParser]
    throttle_classes = [SubmitRateThrottle]
    throttle_scope = SUBMIT_SCOPE
    lookup_value_regex = r"[^/]+"
    # What a token-authenticated poll read along with the token (see perform_authentication).
    _polled: tuple[Job | None, tuple | None] | None = None

    def get_queryset(self) -> QuerySet[Job]:
        jobs = Job.objects.all()
        user = self.request.user
        if self.action == "list" or not sees_all_jobs(user):
            jobs = jobs.owned_by(user)
        return jobs

    def get_object(self) -> Job:
        """The job, or 404 for ids that are malformed, unknown or not the caller's."""
        self._job_id()
        try:
            return super().get_object()
        except Http404:
            raise Http404(NOT_FOUND) from None

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context.setdefault("positions", {})
        return context

    def _serialize(self, jobs: Iterable[Job], many: bool = False) -> Any:
        """Serialize with the queue positions of the queued ones, in one query."""
        jobs = list(jobs)
        queued = [j.pk for j in jobs if j.status == JobStatus.QUEUED]
        with connections[Job.objects.db].cursor() as cursor:
            positions = queries.queue_positions(cursor, queued)
        context = {**self.get_serializer_context(), "positions": positions}
        if many:
            return JobSerializer(jobs, many=True, context=context).data
        return JobSerializer(jobs[0], context=context).data

    def filter_queryset(self, queryset: QuerySet[Job]) -> QuerySet[Job]:
        params = self.request.query_params
        if self.action != "list":
            return queryset
        status_filter = params.get("status")
        if status_filter is not None:
            if status_filter not in JobStatus.values:
                raise ValidationError(
                    {"status": [f"Must be one of {', '.join(JobStatus.values)}."]}
                )
            queryset = queryset.filter(status=status_filter)
        for field in ("queue", "task"):
            if (value := params.get(field)) is not None:
                if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse, do not 500
                    raise ValidationError({field: ["Null characters are not allowed."]})
                queryset = queryset.filter(**{field: value})
        return queryset

    @extend_schema(
        description="The caller's own jobs, newest first, a page at a time.",
        parameters=LIST_PARAMETERS,
        responses={200: JobSerializer, **errors(400, 401)},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._serialize(page or [], many=True))

    @extend_schema(
        parameters=[JOB_ID, WAIT_PARAM],
        responses={200: JobSerializer, **errors(400, 401, 404), **WATCH_LIMITS},
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The job with its figures: one prepared statement, with the token's lookup if any.

        With ``?wait=N`` the view answers at once all the same, and grants the
        watching layer (``jobqueue.api.watching``) the right to hold the
        request on the event loop until the job changes.
        """
        wait = self._wait_seconds()
        job, data = self._visible_job()
        if wait > 0:
            _grant(request, job, data)
        return Response(data)

    @extend_schema(
        parameters=[JOB_ID, LAST_EVENT_ID_HEADER],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                JOB_EVENT_SCHEMA,
                description="Server-sent events: the job at once, then one event per change "
                "of status, progress, result or error, with keep-alive comments in between; "
                "the stream ends once the job finishes. A client reconnecting with "
                "Last-Event-ID misses no change.",
            ),
            **{(code, "application/json"): response for code, response in errors(401, 404).items()},
            **{(code, "application/json"): response for code, response in WATCH_LIMITS.items()},
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[EventStreamRenderer])
    def events(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The job's state as the first event of its stream (the watching layer sends the rest).

        Served alone (a WSGI server, without project.asgi), the stream ends
        after this event and EventSource reconnects a second later: polling.
        """
        job, data = self._visible_job()
        _grant(request, job, data)
        seen = request.headers.get("Last-Event-ID") == event_id(data) and not job.is_finished
        return Response(
            None if seen else data, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        """On the events route only a job is an event; errors and OPTIONS are JSON as elsewhere."""
        response = super().finalize_response(request, response, *args, **kwargs)
        renderer = getattr(response, "accepted_renderer", None)
        if isinstance(renderer, EventStreamRenderer) and (
            self.action != "events" or response.status_code >= 400
        ):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response

    def _visible_job(self) -> tuple[Job, dict[str, Any]]:
        """The job in the URL and its JSON, if the caller may see it; else 404."""
        request = self.request
        job, position = self._polled or self._read_visible(self._job_id())
        if job is None or not (job.owner_id == request.user.pk or sees_all_jobs(request.user)):
            raise Http404(NOT_FOUND)
        self.check_object_permissions(request, job)
        return job, job_data(job, position, show_traceback=shows_traceback(request.user))

    def perform_authentication(self, request: Request) -> None:
        """For a poll with a token, authenticate and read the job in one statement.

        Any other request, or a poll this cannot authenticate, goes through
        the authentication classes as usual (which then answer 401 or not).
        """
        self._polled = None
        job_id = self._parse_job_id() if self.action in ("retrieve", "events") else None
        if job_id is not None:
            self._polled = poll_reader.read(request, job_id)
        super().perform_authentication(request)

    def _parse_job_id(self) -> int | None:
        raw = str(self.kwargs[self.lookup_field])
        if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_ID:
            return None
        return int(raw)

    def _job_id(self) -> int:
        """The id in the URL, or 404 when it cannot be one."""
        job_id = self._parse_job_id()
        if job_id is None:
            raise Http404(NOT_FOUND)
        return job_id

    def _read_visible(self, job_id: int) -> JobAndPosition:
        """The job and its figures, if the caller may see it (as ``get_queryset``), else 404."""
        user = self.request.user
        found = job_reader.read(job_id, None if sees_all_jobs(user) else user.pk)
        if found is None:
            raise Http404(NOT_FOUND)
        return found

    def _wait_seconds(self) -> float:
        raw = self.request.query_params.get("wait")
        if raw is None:
            return 0.0
        try:
            wait = float(raw)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise ValidationError(
                {"wait": [f"Must be a number of seconds from 0 to {MAX_WAIT_SECONDS}."]}
            )
        return wait

    @extend_schema(
        description="Submit a job. Beyond what the body's schema says, a submission must "
        "fit the task's parameters (GET /api/tasks/: required ones given, no others, JSON "
        "types as listed), give scheduled_at or delay_seconds but not both, and send the "
        "same key in the idempotency_key field and the Idempotency-Key header if it sends "
        "both; else 400, and nothing is stored. A key the caller used before answers 200 "
        "with that first job.",
        request=JobSubmitSerializer,
        parameters=[IDEMPOTENCY_HEADER, LOCATION_HEADER, RETRY_AFTER_HEADER],
        responses={
            202: OpenApiResponse(SubmittedJobSerializer, description="Queued."),
            200: OpenApiResponse(
                SubmittedJobSerializer,
                description="The job first submitted with this idempotency key, or the live job "
                "holding this unique key; its duplicate field is true.",
            ),
            409: OpenApiResponse(
                ErrorSerializer, description="Another user's live job holds the unique key."
            ),
            **errors(400, 401, 403, 413, 415, 429),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError("The body must be a JSON object with at least a 'task' field.")
        data = dict(request.data)
        header_key = request.headers.get("Idempotency-Key")
        if header_key is not None:
            if data.get("idempotency_key", header_key) != header_key:
                raise ValidationError(
                    {"idempotency_key": ["Differs from the Idempotency-Key header; send one."]}
                )
            data["idempotency_key"] = header_key
        submit = JobSubmitSerializer(data=data)
        submit.is_valid(raise_exception=True)
        key = submit.validated_data.get("idempotency_key")
        if key is not None and (earlier := self._earlier(key)) is not None:
            return self._duplicate(earlier)
        task = submit.build_task()
        if (unique_key := submit.validated_data.get("unique_key")) is not None:
            # The caller's own key, as an Idempotency-Key is: another user's live job
            # with the same key neither blocks this one nor is shown to this caller.
            task = cast(JobQueueTask, task).using(unique_key=f"user-{request.user.pk}:{unique_key}")
        backend = cast(JobQueueBackend, task.get_backend())  # exposed tasks are checked to use it
        try:
            with transaction.atomic(using=backend.database):
                job = backend.enqueue_job(
                    task,
                    submit.validated_data["args"],
                    submit.validated_data["kwargs"],
                    owner=request.user,
                    idempotency_key=key,
                )
        except InvalidTask as e:  # what only the backend checks, e.g. NUL characters in arguments
            raise ValidationError({"args": [str(e)]}) from e
        except IntegrityError:
            # A concurrent submit with the same key committed first: answer with its job.
            if key is None or (earlier := self._earlier(key)) is None:
                raise
            return self._duplicate(earlier)
        if job.duplicate:
            if job.owner_id != request.user.pk and not sees_all_jobs(request.user):
                raise Conflict("A job of this task with the same unique key is queued or running.")
            return self._duplicate(job)
        location = request.build_absolute_uri(reverse("job-detail", args=[job.pk]))
        data = {**self._serialize([job]), "duplicate": False}
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    def _duplicate(self, job: Job) -> Response:
        """200 with the job that a submission duplicated (same idempotency or unique key)."""
        return Response({**self._serialize([job]), "duplicate": True}, status=status.HTTP_200_OK)

    def _earlier(self, key: str) -> Job | None:
        return Job.objects.owned_by(self.request.user).filter(idempotency_key=key).first()

    @extend_schema(request=None, parameters=[JOB_ID], responses=JOB_ACTION_RESPONSES)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Cancel a queued job at once; ask a running one to stop (202). 409 once finished."""
        job = self._apply_state_change(
            queries.cancel, "only queued or running jobs can be cancelled."
        )
        code = status.HTTP_200_OK if job.is_finished else status.HTTP_202_ACCEPTED
        return Response(self._serialize([job]), status=code)

    @extend_schema(
        request=None,
        parameters=[JOB_ID],
        responses=JOB_ACTION_RESPONSES,
        summary="Cancel (never deletes)",
        description="The same as POST /api/jobs/{id}/cancel/: jobs are never deleted here.",
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.cancel(request, *args, **kwargs)

    @extend_schema(
        request=None,
        parameters=[JOB_ID],
        responses={200: JobSerializer, **errors(401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Put a failed or cancelled job back in the queue with a fresh attempt budget."""
        job = self._apply_state_change(
            queries.retry,
            "only failed or cancelled jobs can be retried, and a unique one only while no "
            "other job holding its key is queued or running.",
        )
        return Response(self._serialize([job]))

    def _apply_state_change(
        self, change: Callable[[Any, Sequence[int]], Sequence[int]], refused: str
    ) -> Job:
        """The requested job after ``change`` (queries.cancel or queries.retry) ran on it.

        The statement decides against the row as it is when it runs, not as this view read
        it, so the job is read back: a job it did not change is a 409 that names the state
        it is in now, then ``refused``, which says what the action needs.
        """
        job = self.get_object()
        changed = change_jobs(change, [job.pk], using=Job.objects.db)
        job.refresh_from_db()
        if not changed:
            raise Conflict(f"The job {STATE_PHRASES[job.status]}; {refused}")
        return job


def shows_traceback(user: Any) -> bool:
    """Tracebacks are shown to staff only: to the job's poll and to its watchers alike."""
    return bool(user.is_staff)


def _grant(request: Request, job: Job, data: dict[str, Any]) -> None:
    """Let the watching layer hold this request open for ``job``, from the state in ``data``."""
    request.META[GRANT_KEY] = WatchGrant(
        job_id=job.pk,
        user_id=request.user.pk,
        show_traceback=shows_traceback(request.user),
        seen=event_id(data),
        finished=job.is_finished,
    )
