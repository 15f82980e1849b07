"""Each route runs a fixed, small number of queries, however many jobs there are."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from jobqueue.models import Job, JobStatus, Worker

ROUTES = [
    ("POST", "/api/jobs/", {"task": "demo.echo"}),
    ("POST", "/api/jobs/", {"task": "demo.echo", "idempotency_key": "fixed"}),
    ("GET", "/api/jobs/", None),
    ("GET", "/api/jobs/?status=queued&queue=default", None),
    ("GET", "/api/jobs/{queued}/", None),
    ("POST", "/api/jobs/{queued}/cancel/", None),
    ("GET", "/api/jobs/{finished}/", None),
    ("POST", "/api/jobs/{finished}/retry/", None),
    ("GET", "/api/tasks/", None),
    ("GET", "/api/queues/", None),
    ("GET", "/api/health/", None),
]


def count_queries(client: APIClient, user, jobs: int) -> dict[str, int]:
    """Queries per route with ``jobs`` of the user's jobs in the table."""
    Job.objects.bulk_create(
        Job(task="demo.echo", owner=user, queue="default", status=JobStatus.QUEUED)
        for _ in range(jobs)
    )
    counts = {}
    for method, template, body in ROUTES:
        queued = Job.objects.filter(owner=user, status=JobStatus.QUEUED).first()
        finished = Job.objects.filter(owner=user, status=JobStatus.CANCELLED).first()
        path = template.format(queued=queued.pk, finished=finished.pk if finished else 0)
        data = body
        if body and "idempotency_key" in body:
            data = {**body, "idempotency_key": f"key-{jobs}"}
        with CaptureQueriesContext(connection) as queries:
            reply = getattr(client, method.lower())(path, data=data, format="json")
        assert reply.status_code < 300, (method, path, reply.content)
        label = f"{method} {template}" + (" (Idempotency-Key)" if "key" in str(body) else "")
        counts[label] = len(queries)
    return counts


@pytest.mark.django_db
def test_query_counts_do_not_grow_with_the_table(make_user, capsys):
    user, token = make_user("counter")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    _, staff_token = make_user("operator", staff=True)
    staff_client = APIClient()
    staff_client.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")
    small = count_queries(client, user, jobs=3)
    large = count_queries(client, user, jobs=300)
    assert small == large
    for workers in (1, 20):
        Worker.objects.bulk_create(
            Worker(hostname="h", pid=n, concurrency=1) for n in range(workers)
        )
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get("/api/workers/").status_code == 200
        small.setdefault("GET /api/workers/", len(queries))
        assert small["GET /api/workers/"] == len(queries)
    # BEGIN and COMMIT around the insert are counted as queries too.
    assert max(small.values()) <= 6
    # A poll reads the token, its user, the job and its queue figures in one statement.
    assert small["GET /api/jobs/{queued}/"] == small["GET /api/jobs/{finished}/"] == 1
    with capsys.disabled():
        print("\nqueries per request (token auth included):")
        for route, n in small.items():
            print(f"  {n}  {route}")
