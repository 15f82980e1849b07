"""Bad input: each case gets the right 4xx, a message saying what to change, and no row."""

import json

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from jobqueue.models import Job

OVERSIZE = {"task": "demo.echo", "kwargs": {"blob": "x" * (300 * 1024)}}

# (case, raw body, extra headers, status, words the message must contain)
SUBMIT_CASES = [
    ("malformed json", b'{"task": "demo.echo",', {}, 400, "JSON parse error"),
    ("not an object", b'["demo.echo"]', {}, 400, "JSON object"),
    ("no task", b"{}", {}, 400, "task: This field is required"),
    ("nul in kwargs", {"task": "demo.echo", "kwargs": {"a": "x\u0000"}}, {}, 400, "NUL"),
    (
        "lone surrogate in kwargs",
        b'{"task": "demo.echo", "kwargs": {"a": "x\\ud800"}}',
        {},
        400,
        "a lone surrogate ('\\ud800') at index 1 of the string at kwargs['a']",
    ),
    (
        "lone surrogate in a key",
        b'{"task": "demo.echo", "kwargs": {"b": {"\\udc00": 1}}}',
        {},
        400,
        "a lone surrogate ('\\udc00') at index 0 of the key '\\udc00' of kwargs['b']",
    ),
    ("nan in kwargs", b'{"task": "demo.echo", "kwargs": {"x": NaN}}', {}, 400, "JSON parse error"),
    ("infinity in args", b'{"task": "demo.echo", "args": [-Infinity]}', {}, 400, "JSON parse"),
    (
        "number too large for a float",
        b'{"task": "demo.echo", "kwargs": {"x": [1e999]}}',
        {},
        400,
        "kwargs: x: Value must be valid JSON",
    ),
    (
        "lone surrogate in the idempotency key",
        b'{"task": "demo.echo", "idempotency_key": "k\\ud800"}',
        {},
        400,
        "idempotency_key: Surrogate characters are not allowed",
    ),
    ("unknown task", {"task": "demo.nope"}, {}, 400, "Valid names: demo.echo"),
    (
        "os.system",
        {"task": "os.system", "args": ["touch /tmp/pwned"]},
        {},
        400,
        "not a task exposed",
    ),
    ("unexposed real task", {"task": "tests.tasks.record"}, {}, 400, "not a task exposed"),
    (
        "wrong argument type",
        {"task": "demo.sleep", "kwargs": {"seconds": "soon"}},
        {},
        400,
        "kwargs: argument 'seconds' of demo.sleep must be number",
    ),
    (
        "unknown keyword",
        {"task": "demo.sleep", "kwargs": {"minutes": 1}},
        {},
        400,
        "kwargs: demo.sleep(seconds: float = 5) -> dict[str, float]: got an unexpected keyword",
    ),
    ("too many positionals", {"task": "demo.sleep", "args": [1, 2]}, {}, 400, "args: demo.sleep"),
    (
        "positional of the wrong type",
        {"task": "demo.sleep", "args": ["soon"]},
        {},
        400,
        "args: argument 'seconds' of demo.sleep must be number",
    ),
    (
        "unknown field",
        {"task": "demo.echo", "colour": "blue"},
        {},
        400,
        "colour: Unknown field; the fields are task, args, kwargs",
    ),
    ("args not a list", {"task": "demo.echo", "args": {"a": 1}}, {}, 400, "args: Expected a list"),
    ("kwargs not an object", {"task": "demo.echo", "kwargs": [1]}, {}, 400, "kwargs: Expected a"),
    ("oversize payload", OVERSIZE, {}, 413, "over the limit"),
    ("priority too high", {"task": "demo.echo", "priority": 101}, {}, 400, "priority: Ensure"),
    ("priority too low", {"task": "demo.echo", "priority": -101}, {}, 400, "priority: Ensure"),
    ("priority not int", {"task": "demo.echo", "priority": 1.5}, {}, 400, "priority: A valid"),
    ("zero attempts", {"task": "demo.echo", "max_attempts": 0}, {}, 400, "max_attempts: Ensure"),
    ("too many attempts", {"task": "demo.echo", "max_attempts": 1001}, {}, 400, "1000"),
    ("bad queue name", {"task": "demo.echo", "queue": "no spaces!"}, {}, 400, "Queue names are"),
    ("negative delay", {"task": "demo.echo", "delay_seconds": -1}, {}, 400, "delay_seconds"),
    ("nan delay", {"task": "demo.echo", "delay_seconds": "nan"}, {}, 400, "delay_seconds"),
    (
        "both schedules",
        {"task": "demo.echo", "delay_seconds": 1, "scheduled_at": "2030-01-01T00:00:00Z"},
        {},
        400,
        "not both",
    ),
    ("bad date", {"task": "demo.echo", "scheduled_at": "tomorrow"}, {}, 400, "scheduled_at"),
    ("zero timeout", {"task": "demo.echo", "timeout_seconds": 0}, {}, 400, "timeout_seconds"),
    (
        "key mismatch",
        {"task": "demo.echo", "idempotency_key": "a"},
        {"Idempotency-Key": "b"},
        400,
        "Differs from the Idempotency-Key header",
    ),
    (
        "form data",
        b"task=demo.echo",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "",
    ),
]


@pytest.mark.parametrize("case", SUBMIT_CASES, ids=[case[0] for case in SUBMIT_CASES])
def test_bad_submission_is_refused_and_writes_nothing(api, make_user, case):
    _, body, headers, status, words = case
    _, token = make_user()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = api.call("POST", "/api/jobs/", raw=raw, token=token, headers=headers)
    assert reply.status == status, reply.body
    assert words in reply.body["detail"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/jobs/abc/", 404, "No such job"),
        ("/api/jobs/-1/", 404, "No such job"),
        ("/api/jobs/1.5/", 404, "No such job"),
        ("/api/jobs/99999999999999999999999/", 404, "No such job"),
        ("/api/jobs/%E2%91%A0/", 404, "No such job"),
        ("/api/jobs/123456/", 404, "No such job"),
        ("/api/jobs/?status=done", 400, "status: Must be one of queued"),
        ("/api/jobs/?cursor=zzz", 400, "cursor: Not a cursor of this API"),
        ("/api/jobs/?page_size=0", 400, "page_size: Must be a whole number from 1 to 200"),
        ("/api/jobs/?page_size=201", 400, "page_size: Must be a whole number from 1 to 200"),
        ("/api/jobs/?queue=a%00b", 400, "queue: Null characters are not allowed"),
        ("/api/jobs/?task=demo.echo%00", 400, "task: Null characters are not allowed"),
    ],
)
def test_bad_lookups(api, make_user, path, status, words):
    _, token = make_user()
    reply = api.call("GET", path, token=token)
    assert reply.status == status, reply.body
    assert words in reply.body["detail"]


@pytest.mark.parametrize("wait", ["31", "-1", "soon", "nan"])
def test_bad_wait_is_400(api, make_user, wait):
    _, token = make_user()
    job = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=token).body
    reply = api.call("GET", f"/api/jobs/{job['id']}/?wait={wait}", token=token)
    assert reply.status == 400
    assert "wait: Must be a number of seconds from 0 to 30" in reply.body["detail"]


def test_anonymous_and_bad_token_submit_nothing(api):
    for headers in ({}, {"Authorization": "Token nope"}, {"Authorization": "Bearer x"}):
        reply = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, headers=headers)
        assert reply.status == 401, headers
        assert reply.body["detail"]
    assert Job.objects.count() == 0


def test_other_users_job_is_404_and_unchanged(api, make_user):
    _, owner = make_user()
    _, other = make_user()
    job = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=owner).body
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "cancel/"), ("POST", "retry/")]:
        reply = api.call(method, f"/api/jobs/{job['id']}/{suffix}", token=other)
        assert reply.status == 404
        assert reply.body["detail"].startswith("No such job")
    assert Job.objects.get(pk=job["id"]).status == "queued"


@override_settings(
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
        "DEFAULT_THROTTLE_RATES": {"jobs-submit": "2/min"},
        "EXCEPTION_HANDLER": "jobqueue.api.errors.api_exception_handler",
    }
)
def test_submissions_are_throttled_per_user_with_retry_after(make_user):
    cache.clear()
    user, _ = make_user()
    other, _ = make_user()
    client = APIClient()
    client.force_authenticate(user)
    codes = [client.post("/api/jobs/", {"task": "demo.echo"}, format="json") for _ in range(3)]
    assert [r.status_code for r in codes] == [202, 202, 429]
    assert int(codes[2].headers["Retry-After"]) > 0
    assert "throttled" in codes[2].json()["detail"]
    assert client.get("/api/jobs/").status_code == 200  # reads are not throttled
    client.force_authenticate(other)
    assert client.post("/api/jobs/", {"task": "demo.echo"}, format="json").status_code == 202
    assert Job.objects.count() == 3


def nested_json(depth: int) -> str:
    """JSON text of lists ``depth`` levels deep."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("depth", "code"), [(101, "invalid"), (3000, "invalid"), (12_000, "parse_error")]
)
def test_arguments_nested_too_deep_are_refused_with_the_limit_and_write_nothing(
    api, make_user, depth, code
):
    """12,000 levels are past what the JSON parser itself can nest: a 400 too, not a 500."""
    _, token = make_user()
    raw = f'{{"task": "demo.echo", "kwargs": {{"tree": {nested_json(depth)}}}}}'.encode()
    reply = api.call("POST", "/api/jobs/", raw=raw, token=token)
    assert reply.status == 400, reply.body
    assert reply.body["code"] == code
    assert "more than 100 levels deep" in reply.body["detail"]
    assert Job.objects.count() == 0


def test_arguments_at_the_depth_limit_are_accepted(api, make_user):
    _, token = make_user()
    raw = f'{{"task": "demo.echo", "kwargs": {{"tree": {nested_json(100)}}}}}'.encode()
    reply = api.call("POST", "/api/jobs/", raw=raw, token=token)
    assert reply.status == 202, reply.body
    assert Job.objects.get(pk=reply.body["id"]).kwargs == {"tree": json.loads(nested_json(100))}
