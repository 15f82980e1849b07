"""The job poll's lean path: one statement, the same answers as the general path."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from jobqueue import db
from jobqueue.api.middleware import close_if_server_closed
from jobqueue.api.negotiation import ContentNegotiation
from jobqueue.api.serializers.jobs import JobSerializer
from jobqueue.models import Job, JobStatus, Worker


@pytest.mark.django_db
def test_a_token_poll_is_one_query_and_a_session_poll_answers_the_same(make_user):
    user, token = make_user()
    Worker.objects.create(hostname="h", pid=1, concurrency=2)
    ahead = Job.objects.create(task="demo.echo", owner=user)
    job = Job.objects.create(task="demo.echo", owner=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    with CaptureQueriesContext(connection) as queries:
        by_token = client.get(f"/api/jobs/{job.pk}/")
    assert by_token.status_code == 200, by_token.content
    assert len(queries) == 1
    assert by_token.json()["position_in_queue"] == 1
    session = APIClient()
    session.force_login(user)
    by_session = session.get(f"/api/jobs/{job.pk}/")
    assert by_session.status_code == 200
    assert by_session.json() == by_token.json()
    assert client.get(f"/api/jobs/{ahead.pk}/").json()["position_in_queue"] == 0


def test_poll_authentication_answers_as_drf_token_auth(api, make_user):
    user, token = make_user()
    _, other_token = make_user()
    job = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=token).body
    path = f"/api/jobs/{job['id']}/"
    unknown = api.call("GET", path, token="0" * 40)
    assert unknown.status == 401 and unknown.body["detail"] == "Invalid token."
    assert unknown.headers["WWW-Authenticate"] == "Token"
    malformed = api.call("GET", path, headers={"Authorization": f"Token {token} extra"})
    assert malformed.status == 401
    assert api.call("GET", "/api/jobs/not-a-number/").status == 401
    assert api.call("GET", path, token=other_token).status == 404
    user.is_active = False
    user.save()
    inactive = api.call("GET", path, token=token)
    assert inactive.status == 401 and inactive.body["detail"] == "User inactive or deleted."


def _drf_representation(job: Job, context: dict) -> dict:
    """The job as DRF's field-by-field ModelSerializer path renders it."""
    serializer = JobSerializer(job, context=context)
    return serializers.ModelSerializer.to_representation(serializer, job)


@pytest.mark.django_db
@pytest.mark.parametrize("staff", [False, True])
def test_lean_representation_equals_the_serializer_fields(make_user, staff):
    user, _ = make_user(staff=staff)
    now = timezone.now()
    error = {"attempt": 1, "type": "builtins.ValueError", "message": "bad", "traceback": "TB"}
    jobs = [
        Job.objects.create(task="demo.echo", owner=user, kwargs={"x": [1, "é"]}),
        Job.objects.create(
            task="demo.progress",
            owner=user,
            status=JobStatus.RUNNING,
            started_at=now - timedelta(seconds=3),
            progress_percent=42.5,
            progress_message="step 2 of 5",
            progress_updated_at=now,
            attempts=2,
            errors=[error],
        ),
        Job.objects.create(
            task="demo.fail",
            owner=user,
            status=JobStatus.FAILED,
            started_at=now - timedelta(seconds=1),
            finished_at=now,
            errors=[error, {**error, "attempt": 2}],
            attempts=2,
            cancel_requested=True,
        ),
        Job.objects.create(
            task="demo.echo",
            owner=user,
            status=JobStatus.SUCCEEDED,
            started_at=now,
            finished_at=now + timedelta(microseconds=1500),
            result={"ok": True},
            errors=[error],
        ),
    ]
    request = APIRequestFactory().get("/api/jobs/")
    request.user = user
    positions = {jobs[0].pk: (3, 2.5, 2, 0.0)}
    context = {"request": request, "positions": positions}
    for created in jobs:
        job = Job.objects.get(pk=created.pk)
        lean = dict(JobSerializer(job, context=context).data)
        drf = _drf_representation(job, context)
        if job.status == JobStatus.RUNNING:  # elapsed until now: read twice, a moment apart
            assert lean.pop("elapsed_seconds") == pytest.approx(drf.pop("elapsed_seconds"), abs=1)
        assert lean == drf
        assert list(lean) == [f for f in JobSerializer.Meta.fields if f in drf]
    assert JobSerializer(jobs[0], context=context).data["estimated_wait_seconds"] == 3.75


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_closed_is_replaced_before_the_request():
    connection.ensure_connection()
    close_if_server_closed("default")
    pid = connection.connection.info.backend_pid
    assert connection.connection is not None  # an idle, healthy connection stays
    with db.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while connection.connection is not None and time.monotonic() < deadline:
        close_if_server_closed("default")
        time.sleep(0.05)
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


ACCEPTS = [None, "*/*", "application/json", " */* ", "text/html", "application/json; indent=4"]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api"])
def test_negotiation_shortcut_answers_as_drf(accept, query):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(f"/api/jobs/1/{query}", **headers))

    def answer(negotiation):
        try:
            renderer, media_type = negotiation.select_renderer(request, [JSONRenderer()])
        except Exception as e:
            return type(e).__name__
        return type(renderer).__name__, media_type

    assert answer(ContentNegotiation()) == answer(DefaultContentNegotiation())


@pytest.mark.django_db
def test_messages_are_set_up_for_the_admin_but_not_the_api():
    client = Client()
    assert not hasattr(client.get("/api/health/").wsgi_request, "_messages")
    assert hasattr(client.get("/admin/login/").wsgi_request, "_messages")
