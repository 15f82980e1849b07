"""The admin's queue limits page: settings' limits shown, staff overrides kept, reset."""

import pytest
from django.test import override_settings
from django.urls import reverse

import demo
from jobqueue.models import Job, QueueLimit

URL = reverse("admin:jobqueue_queuelimit_changelist")


@pytest.fixture(autouse=True)
def declared():
    with override_settings(
        JOBQUEUE={"QUEUES": {"reports": {"concurrency": 2}, "mail": {"rate": "10/s"}}}
    ):
        yield


def test_the_list_shows_the_settings_limits_with_their_running_jobs(staff_client):
    client = staff_client("view_queuelimit")
    page = client.get(URL).content.decode()
    assert "reports" in page and "10/s" in page and "settings" in page
    assert QueueLimit.objects.get(queue="mail").per == 1.0


def test_an_edit_becomes_an_override_that_settings_leave_alone_until_reset(staff_client):
    client = staff_client("view_queuelimit", "change_queuelimit", "add_queuelimit")
    client.get(URL)
    change = reverse("admin:jobqueue_queuelimit_change", args=["reports"])
    response = client.post(change, {"concurrency": 1, "rate": "", "per": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    client.get(URL)  # the sync that opening the list does leaves the override alone
    limit = QueueLimit.objects.get(queue="reports")
    assert (limit.concurrency, limit.source) == (1, "admin")

    added = client.post(
        reverse("admin:jobqueue_queuelimit_add"), {"queue": "crawl", "rate": 5, "per": ""}
    )
    assert added.status_code == 302
    assert (
        QueueLimit.objects.get(queue="crawl").rate,
        QueueLimit.objects.get(queue="crawl").per,
    ) == (
        5,
        1.0,
    ), "a rate without a window counts per second"

    refused = client.post(
        reverse("admin:jobqueue_queuelimit_add"), {"queue": "flood", "rate": 20_000, "per": 3600}
    )
    assert refused.status_code == 200 and "At most 10,000 starts per window" in refused.text
    assert not QueueLimit.objects.filter(queue="flood").exists()

    action = {"_selected_action": ["reports", "crawl"], "action": "reset_to_settings"}
    client.post(URL, {**action, "index": 0})
    assert QueueLimit.objects.get(queue="reports").concurrency == 2
    assert not QueueLimit.objects.filter(queue="crawl").exists()


def test_the_running_count_is_the_queues_running_jobs(staff_client):
    client = staff_client("view_queuelimit")
    client.get(URL)
    job = demo.echo.using(queue_name="reports").enqueue()
    Job.objects.filter(pk=job.id).update(status="running", started_at=job.enqueued_at)
    page = client.get(URL).content.decode()
    assert '<td class="field-running">1</td>' in page
