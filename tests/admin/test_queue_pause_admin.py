"""Pausing and resuming a queue from the admin's health page."""

from django.urls import reverse

import demo
from jobqueue.models import QueuePause

HEALTH = reverse("admin:jobqueue_job_health")


def url(queue: str, verb: str) -> str:
    return reverse("admin:jobqueue_queue_pause", args=[queue, verb])


def test_the_health_page_pauses_and_resumes_a_queue(staff_client):
    client = staff_client("view_job", "pause_queue")
    demo.echo.using(queue_name="mail").enqueue()
    page = client.get(HEALTH).content.decode()
    assert url("mail", "pause") in page and "active" in page
    client.post(url("mail", "pause"))
    assert QueuePause.objects.get().queue == "mail"
    page = client.get(HEALTH).content.decode()
    assert "paused" in page and url("mail", "resume") in page
    client.post(url("mail", "resume"))
    assert not QueuePause.objects.exists()


def test_pausing_needs_the_permission(staff_client):
    client = staff_client("view_job")
    demo.echo.using(queue_name="mail").enqueue()
    assert url("mail", "pause") not in client.get(HEALTH).content.decode()
    assert client.post(url("mail", "pause")).status_code == 403
    assert not QueuePause.objects.exists()
