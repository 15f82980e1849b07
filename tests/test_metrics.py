"""GET /metrics: the cluster's gauges from the database, behind a bearer token.

Prometheus itself scraping these is tests/test_prometheus.py; the worker's own
metrics (runworker --metrics-port) are there too.
"""

import shutil
import subprocess
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import demo
from jobqueue.models import Job, QueueLimit, Worker
from jobqueue.scheduling import pauses

TOKEN = "s3cret-scrape-token"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: Client, **headers: str) -> tuple[int, str]:
    response = client.get("/metrics", headers=headers)
    return response.status_code, response.content.decode()


@pytest.fixture
def cluster(db: None) -> None:
    """reports: 2 ready (one due a minute ago), 1 scheduled, 1 running; 1 live and 1 lost worker."""
    demo.echo.using(queue_name="reports").enqueue()
    ready = demo.echo.using(queue_name="reports").enqueue()
    Job.objects.filter(pk=ready.id).update(scheduled_at=timezone.now() - timedelta(minutes=1))
    demo.echo.using(queue_name="reports", run_after=timezone.now() + timedelta(hours=1)).enqueue()
    running = demo.echo.using(queue_name="reports").enqueue()
    live = Worker.objects.create(hostname="h", pid=1, concurrency=2)
    Worker.objects.create(hostname="h", pid=2, concurrency=2, lost_at=timezone.now())
    Job.objects.filter(pk=running.id).update(
        status="running", started_at=timezone.now(), heartbeat_at=timezone.now(), worker=live
    )


def test_the_cluster_gauges_count_jobs_by_queue_and_state_and_workers(
    cluster: None, client: Client, settings
) -> None:
    settings.JOBQUEUE_METRICS_TOKEN = TOKEN
    status, text = scrape(client, Authorization=f"Bearer {TOKEN}")
    assert status == 200
    got = samples(text)
    q = ("queue", "reports")
    assert got[("jobqueue_jobs", (q, ("state", "ready")))] == 2
    assert got[("jobqueue_jobs", (q, ("state", "scheduled")))] == 1
    assert got[("jobqueue_jobs", (q, ("state", "running")))] == 1
    assert 59 <= got[("jobqueue_oldest_ready_age_seconds", (q,))] < 120
    assert got[("jobqueue_workers", (("state", "live"),))] == 1
    assert got[("jobqueue_workers", (("state", "lost"),))] == 1


def test_queue_pauses_and_limits_are_gauges(cluster: None, client: Client, settings) -> None:
    """A paused queue reads 1 and the others 0, also a paused queue with no job in it; the
    limits as the claim reads them, for limited queues only; resuming reads 0 again."""
    settings.JOBQUEUE_METRICS_TOKEN = TOKEN
    pauses.pause("reports", by="test")
    pauses.pause("empty", by="test")
    QueueLimit.objects.create(queue="reports", concurrency=2, rate=100, per=60.0)
    QueueLimit.objects.create(queue="mail", rate=10, per=1.0)
    got = samples(scrape(client, Authorization=f"Bearer {TOKEN}")[1])
    assert got[("jobqueue_queue_paused", (("queue", "reports"),))] == 1
    assert got[("jobqueue_queue_paused", (("queue", "empty"),))] == 1
    assert got[("jobqueue_queue_paused", (("queue", "mail"),))] == 0
    assert got[("jobqueue_queue_concurrency_limit", (("queue", "reports"),))] == 2
    assert ("jobqueue_queue_concurrency_limit", (("queue", "mail"),)) not in got
    assert got[("jobqueue_queue_rate_limit_per_second", (("queue", "reports"),))] == pytest.approx(
        100 / 60
    )
    assert got[("jobqueue_queue_rate_limit_per_second", (("queue", "mail"),))] == 10

    pauses.resume("reports")
    got = samples(scrape(client, Authorization=f"Bearer {TOKEN}")[1])
    assert got[("jobqueue_queue_paused", (("queue", "reports"),))] == 0


@pytest.mark.parametrize(
    "case",
    [
        (False, TOKEN, f"Bearer {TOKEN}", 200),
        (False, TOKEN, "", 401),
        (False, TOKEN, "Bearer wrong", 401),
        (True, TOKEN, f"Token {TOKEN}", 401),  # the token is required even in DEBUG
        (False, "", "", 401),  # no token configured: closed outside DEBUG
        (True, "", "", 200),  # ...and open in DEBUG
    ],
)
def test_metrics_need_the_bearer_token(
    db: None, client: Client, settings, case: tuple[bool, str, str, int]
) -> None:
    debug, token, header, expected = case
    settings.DEBUG = debug
    settings.JOBQUEUE_METRICS_TOKEN = token
    status, text = scrape(client, **({"Authorization": header} if header else {}))
    assert status == expected
    assert ("jobqueue_workers" in text) == (expected == 200)


def test_promtool_accepts_the_exposition(cluster: None, client: Client, settings) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    settings.DEBUG = True
    _, text = scrape(client)
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
