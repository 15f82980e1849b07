"""The admin asks before a bulk change, and every change to jobs leaves an audit trail."""

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.urls import reverse

from jobqueue.models import Job, JobStatus
from tests.admin.test_job_admin import ALL_PERMS, CHANGELIST, action


def confirmation_counts(response) -> dict[tuple[str, str], tuple[int, bool]]:
    """(status, queue) -> (jobs, changes) as the confirmation page lists them."""
    return {(g.status, g.queue): (g.jobs, g.changes) for g in response.context["groups"]}


def test_purge_shows_counts_per_status_and_queue_and_deletes_only_on_confirm(
    staff_client, jobs
) -> None:
    client = staff_client(*ALL_PERMS)
    chosen = (jobs["succeeded"], jobs["cancelled"], jobs["failed"], jobs["running"])

    asked = action(client, "purge_jobs", *chosen, confirm=False)

    assert asked.templates[0].name == "admin/jobqueue/job/action_confirmation.html"
    assert confirmation_counts(asked) == {
        ("cancelled", "reports"): (1, True),
        ("failed", "default"): (1, True),
        ("running", "reports"): (1, False),
        ("succeeded", "default"): (1, True),
    }
    html = asked.content.decode()
    assert "This will purge <strong>3</strong> jobs" in html
    assert "leave <strong>1</strong> selected job as it is" in html
    assert Job.objects.filter(pk__in=[j.pk for j in chosen]).count() == 4  # nothing yet

    done = action(client, "purge_jobs", *chosen)

    assert "Purged 3 finished jobs" in done.content.decode()
    assert set(Job.objects.filter(pk__in=[j.pk for j in chosen]).values_list("id", flat=True)) == {
        jobs["running"].pk
    }


def test_purge_of_everything_selected_across_pages_asks_first_and_keeps_the_filter(
    staff_client, jobs
) -> None:
    """Django's "select all" posts select_across=1: the page counts every job the filter matches,
    and its confirmation posts the same selection back."""
    client = staff_client(*ALL_PERMS)
    url = f"{CHANGELIST}?queue=reports"
    data = {"action": "purge_jobs", "_selected_action": [jobs["cancelled"].pk]}

    asked = client.post(url, {**data, "select_across": "1"})

    assert confirmation_counts(asked) == {
        ("cancelled", "reports"): (1, True),
        ("running", "reports"): (1, False),
    }
    assert 'name="select_across" value="1"' in asked.content.decode()
    client.post(url, {**data, "select_across": "1", "post": "yes"})
    assert not Job.objects.filter(pk=jobs["cancelled"].pk).exists()
    assert Job.objects.filter(queue="default", status__in=["succeeded", "failed"]).count() == 2


def test_retry_and_cancel_ask_for_more_than_one_job_only(staff_client, jobs) -> None:
    client = staff_client(*ALL_PERMS)

    two = action(client, "retry_jobs", jobs["failed"], jobs["cancelled"], confirm=False)
    cancel_two = action(client, "cancel_jobs", jobs["queued"], jobs["running"], confirm=False)

    assert confirmation_counts(two) == {
        ("cancelled", "reports"): (1, True),
        ("failed", "default"): (1, True),
    }
    assert "Yes, cancel 2 jobs" in cancel_two.content.decode()
    assert Job.objects.get(pk=jobs["failed"].pk).status == JobStatus.FAILED
    assert Job.objects.get(pk=jobs["queued"].pk).status == JobStatus.QUEUED

    one = action(client, "retry_jobs", jobs["failed"], confirm=False)

    assert "Re-queued 1 jobs" in one.content.decode()
    assert Job.objects.get(pk=jobs["failed"].pk).status == JobStatus.QUEUED


def entries(job: Job) -> list[LogEntry]:
    return list(LogEntry.objects.filter(object_id=str(job.pk)).order_by("action_time"))


def test_every_admin_action_on_jobs_is_logged_with_who_what_and_when(staff_client, jobs) -> None:
    client = staff_client(*ALL_PERMS, username="operator")

    action(client, "retry_jobs", jobs["failed"], jobs["succeeded"])  # the succeeded one: no-op
    action(client, "cancel_jobs", jobs["queued"], jobs["running"])
    action(client, "purge_jobs", jobs["cancelled"])
    client.post(reverse("admin:jobqueue_job_cancel", args=[jobs["failed"].pk]))

    retried, cancelled_on_page = entries(jobs["failed"])
    assert retried.user.username == "operator" and retried.action_flag == CHANGE
    assert retried.get_change_message() == "Retried (re-queued) from the job list."
    assert retried.object_repr == f"demo.fail #{jobs['failed'].pk} (queued)"
    assert cancelled_on_page.get_change_message() == "Cancelled from the job's page."
    assert entries(jobs["succeeded"]) == []
    assert [e.get_change_message() for e in entries(jobs["queued"])] == [
        "Cancelled from the job list."
    ]
    assert entries(jobs["running"])[0].get_change_message().startswith("Cancel requested")
    (purged,) = entries(jobs["cancelled"])
    assert purged.action_flag == DELETION and "Purged (cancelled)" in purged.get_change_message()


def test_the_trail_shows_in_recent_actions_and_the_jobs_history(staff_client, jobs) -> None:
    client = staff_client(*ALL_PERMS, username="operator")
    client.post(reverse("admin:jobqueue_job_retry", args=[jobs["failed"].pk]))

    history = client.get(reverse("admin:jobqueue_job_history", args=[jobs["failed"].pk]))
    index = client.get(reverse("admin:index"))

    assert "Retried (re-queued) from the job&#x27;s page." in history.content.decode()
    assert "operator" in history.content.decode()
    assert f"demo.fail #{jobs['failed'].pk} (queued)" in index.content.decode()
