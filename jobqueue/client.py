"""A small client for jobqueue's REST API, on the standard library only.

    client = Client("https://example.com", token="...")
    job = client.submit("demo.sleep", kwargs={"seconds": 3})
    done = client.wait(job["id"], timeout=60, on_progress=lambda j: print(j["progress"]))
    print(done["status"], done["result"])
    for state in client.watch(job["id"]):       # each change, as server-sent events
        print(state["status"], state["progress"])

``watch()`` follows the job's event stream (``GET /api/jobs/{id}/events/``)
and reconnects with ``Last-Event-ID`` after a lost connection or a server
restart, so it misses no change. ``wait()`` long-polls (``?wait=N``) so that
it hears of changes at once without hammering the server. When the server
or network fails, both back off and try again until their own timeout runs
out. Errors are typed: a 404 is
``NotFound``, a 409 ``Conflict``, and so on, each carrying the server's
``detail`` that says what to change.
"""

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import urlencode

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
Job = dict[str, Any]


class ClientError(Exception):
    """Base class of the client's errors. Do not raise directly."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ApiError(ClientError):
    """The server answered with an error status; ``detail`` says why."""

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else str(self.body)

    @property
    def code(self) -> str | None:
        """The server's error code (``invalid``, ``not_found``, ``conflict``, ...), if any."""
        return self.body.get("code") if isinstance(self.body, dict) else None


class BadRequest(ApiError):
    """400: the input was rejected; nothing was stored."""


class Unauthorized(ApiError):
    """401: no or wrong credentials."""


class Forbidden(ApiError):
    """403: the caller may not do this."""


class NotFound(ApiError):
    """404: no such job, or not one of the caller's."""


class Conflict(ApiError):
    """409: the job's state does not allow the action."""


class PayloadTooLarge(ApiError):
    """413: the request body is over the server's limit."""


class Throttled(ApiError):
    """429: too many submissions; ``retry_after`` says how long to wait."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed; trying again later may work."""


class ConnectionFailed(ClientError):
    """The server could not be reached."""


class WaitTimeout(ClientError):
    """wait() ran out of time before the job finished; ``job`` is the last state seen."""

    def __init__(self, message: str, *, job: Job | None) -> None:
        super().__init__(message)
        self.job = job


class JobFailed(ClientError):
    """result(): the job failed or was cancelled; ``job`` holds its error."""

    def __init__(self, message: str, *, job: Job) -> None:
        super().__init__(message)
        self.job = job


_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: Throttled,
}


class Client:
    """Talks to one jobqueue site as one user (token authentication)."""

    # Seconds one long-poll request asks the server to hold (the server allows 30).
    LONG_POLL = 25
    # Backoff between attempts after a server or network failure, in seconds.
    BACKOFF_MIN = 0.5
    BACKOFF_MAX = 10.0
    # Seconds an event stream may stay silent before it counts as lost (the server sends a
    # keep-alive comment every 15 s by default).
    STREAM_SILENCE = 45.0
    # Seconds between long-polls that the server answered at once with no change (a
    # server without the ASGI layer does), so that wait() does not hammer it.
    POLL_INTERVAL = 1.0

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def submit(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay_seconds: float | None = None,
        scheduled_at: str | None = None,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job; returns it (the original one when ``idempotency_key`` was seen)."""
        body: dict[str, Any] = {"task": task, "args": args or [], "kwargs": kwargs or {}}
        options = {
            "queue": queue,
            "priority": priority,
            "delay_seconds": delay_seconds,
            "scheduled_at": scheduled_at,
            "max_attempts": max_attempts,
            "timeout_seconds": timeout_seconds,
            "idempotency_key": idempotency_key,
        }
        body.update({k: v for k, v in options.items() if v is not None})
        return self._request("POST", "/api/jobs/", body)

    def get(self, job_id: int, *, wait: float | None = None) -> Job:
        """The job; with ``wait``, the server holds the request until it changes (≤ 30 s)."""
        query = f"?{urlencode({'wait': wait})}" if wait else ""
        timeout = self.timeout + (wait or 0)
        return self._request("GET", f"/api/jobs/{int(job_id)}/{query}", timeout=timeout)

    def wait(
        self,
        job_id: int,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Follow the job until it finishes and return it; ``on_progress`` sees each change.

        Raises WaitTimeout after ``timeout`` seconds (None: no limit). Server
        errors and network failures are retried with jittered backoff; errors
        such as NotFound are raised at once.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = self.BACKOFF_MIN
        last: Job | None = None
        while True:
            remaining = self.LONG_POLL if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout} s", job=last)
            sent = time.monotonic()
            try:
                job = self.get(job_id, wait=max(1, min(self.LONG_POLL, int(remaining))))
            except (ServerError, ConnectionFailed):
                time.sleep(min(backoff * random.uniform(0.5, 1.5), max(remaining, 0)))
                backoff = min(backoff * 2, self.BACKOFF_MAX)
                continue
            backoff = self.BACKOFF_MIN
            changed = _changed(last, job)
            if on_progress is not None and changed:
                on_progress(job)
            last = job
            if job["status"] in FINISHED:
                return job
            if not changed and time.monotonic() - sent < self.POLL_INTERVAL / 2:
                time.sleep(self.POLL_INTERVAL)

    def watch(self, job_id: int, timeout: float | None = None) -> Iterator[Job]:
        """Yield the job now, then at each change of status or progress, until it finishes.

        Follows the server-sent events of ``GET /api/jobs/{id}/events/``. A
        lost connection, a server restart or a full server (429, 503) is
        retried with backoff, resuming with ``Last-Event-ID`` so that the
        first state after a reconnection is the job as it is then, and no
        state is repeated. Errors such as NotFound are raised at once;
        WaitTimeout after ``timeout`` seconds (None: no limit).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = self.BACKOFF_MIN
        seen: str | None = None
        last: Job | None = None
        while True:
            delay = 0.0
            try:
                with self._open_events(job_id, seen) as stream:
                    backoff = self.BACKOFF_MIN
                    for event_id, job in read_events(stream):
                        seen, last = event_id, job
                        yield job
                        if job["status"] in FINISHED:
                            return
            except Throttled as e:
                delay = e.retry_after or backoff
            except (ServerError, ConnectionFailed, OSError, http.client.HTTPException):
                # OSError: the socket timed out or was reset; HTTPException: a cut chunk.
                delay = backoff * random.uniform(0.5, 1.5)
                backoff = min(backoff * 2, self.BACKOFF_MAX)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout} s", job=last)
            time.sleep(delay)

    def result(self, job_id: int, timeout: float | None = None) -> Any:
        """Wait for the job and return its result; JobFailed when it failed or was cancelled."""
        job = self.wait(job_id, timeout)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            why = f"{error.get('type', '')}: {error.get('message', '')}"
            raise JobFailed(f"job {job_id} {job['status']}: {why}", job=job)
        return job["result"]

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job, or ask a running one to stop; Conflict once finished."""
        return self._request("POST", f"/api/jobs/{int(job_id)}/cancel/")

    def retry(self, job_id: int) -> Job:
        """Re-queue a failed or cancelled job; Conflict otherwise."""
        return self._request("POST", f"/api/jobs/{int(job_id)}/retry/")

    def tasks(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/tasks/")

    def queues(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/queues/")

    def _open_events(self, job_id: int, last_event_id: str | None) -> Any:
        """The open event stream of the job (a response to read lines from)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        path = f"/api/jobs/{int(job_id)}/events/"
        return self._open("GET", path, None, headers, self.STREAM_SILENCE)

    def _request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        headers = {"Accept": "application/json"}
        with self._open(method, path, body, headers, timeout or self.timeout) as response:
            try:
                return json.loads(response.read() or b"null")
            except (TimeoutError, ConnectionError) as e:
                raise ConnectionFailed(f"{method} {path}: {e}") from e

    def _open(
        self, method: str, path: str, body: Any, headers: dict[str, str], timeout: float
    ) -> Any:
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise _api_error(e) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise ConnectionFailed(f"{method} {path}: {e}") from e


def _api_error(e: urllib.error.HTTPError) -> ApiError:
    raw = e.read()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    cls = _ERRORS.get(e.code, ServerError if e.code >= 500 else ApiError)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    message = f"{e.code}: {detail}"
    if cls is Throttled:
        retry_after = e.headers.get("Retry-After")
        return Throttled(
            message,
            status=e.code,
            body=body,
            retry_after=float(retry_after) if retry_after else None,
        )
    return cls(message, status=e.code, body=body)


def read_events(stream: IO[bytes]) -> Iterator[tuple[str, Job]]:
    """The (id, job) of each event of a server-sent event stream, until it ends."""
    event_id, data = "", ""
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            yield event_id, json.loads(data)
            data = ""


def _changed(before: Job | None, after: Job) -> bool:
    if before is None:
        return True
    return (before["status"], before["progress"]) != (after["status"], after["progress"])
