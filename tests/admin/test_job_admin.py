"""The job admin through Django's test client against real PostgreSQL."""

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobqueue.models import Job, JobStatus

CHANGELIST = reverse("admin:jobqueue_job_changelist")
ALL_PERMS = ("view_job", "retry_job", "cancel_job", "purge_jobs")


def listed_ids(response) -> set[int]:
    return {job.id for job in response.context["cl"].result_list}


def test_changelist_renders_columns_filters_and_drilldown(staff_client, jobs) -> None:
    response = staff_client(*ALL_PERMS).get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert listed_ids(response) == {j.id for k, j in jobs.items() if k != "lost_worker"}
    assert 'class="jq-status jq-failed"' in html and 'class="jq-progress-fill jq-running"' in html
    assert "host-a:11" in html  # the worker column
    assert "2/2" in html  # attempts
    assert ">reports</a>" in html  # queue filter choice from recent jobs
    assert "Filter by created at" in html or "date-hierarchy-label" in html


def test_filters_narrow_the_list(staff_client, jobs) -> None:
    client = staff_client(*ALL_PERMS)
    today = jobs["queued"].created_at

    by_status = client.get(CHANGELIST, {"status": "failed"})
    by_queue = client.get(CHANGELIST, {"queue": "reports"})
    by_task = client.get(CHANGELIST, {"task": "demo.echo"})
    by_day = client.get(
        CHANGELIST,
        {
            "created_at__year": today.year,
            "created_at__month": today.month,
            "created_at__day": today.day,
        },
    )
    by_year = client.get(CHANGELIST, {"created_at__year": today.year})

    assert listed_ids(by_status) == {jobs["failed"].id}
    assert listed_ids(by_queue) == {jobs["running"].id, jobs["cancelled"].id}
    assert listed_ids(by_task) == {jobs["queued"].id, jobs["succeeded"].id}
    assert len(listed_ids(by_day)) == 5
    assert by_year.status_code == 200 and "All dates" in by_year.content.decode()


def test_search_by_id_task_and_error_text(staff_client, jobs) -> None:
    client = staff_client("view_job")

    assert listed_ids(client.get(CHANGELIST, {"q": str(jobs["running"].id)})) == {
        jobs["running"].id
    }
    assert listed_ids(client.get(CHANGELIST, {"q": "demo.fail"})) == {jobs["failed"].id}
    assert listed_ids(client.get(CHANGELIST, {"q": "second disk"})) == {jobs["failed"].id}


def test_query_count_does_not_grow_with_rows(staff_client, jobs) -> None:
    client = staff_client(*ALL_PERMS)
    client.get(CHANGELIST)  # warm the session and content types
    with CaptureQueriesContext(connection) as few:
        client.get(CHANGELIST)
    running = jobs["running"]
    for _ in range(40):
        running.pk = None
        running.save()
    with CaptureQueriesContext(connection) as many:
        client.get(CHANGELIST)

    assert len(many) == len(few) <= 12, [q["sql"] for q in many.captured_queries]
    assert not any("SELECT DISTINCT" in q["sql"] and "LIMIT" not in q["sql"] for q in many)


def action(client: Client, name: str, *jobs: Job, confirm: bool = True, **extra: str):
    """Post a bulk action from the list; ``confirm`` also answers its confirmation page."""
    data = {"action": name, "_selected_action": [j.pk for j in jobs], **extra}
    return client.post(CHANGELIST, {**data, **({"post": "yes"} if confirm else {})}, follow=True)


def test_actions_are_offered_by_permission(staff_client, jobs) -> None:
    read_only = staff_client("view_job", username="reader").get(CHANGELIST)
    retrier = staff_client("view_job", "retry_job", username="retrier").get(CHANGELIST)

    def offered(response) -> set[str]:
        form = response.context["action_form"]  # None when no action is allowed
        return {name for name, _ in form.fields["action"].choices if name} if form else set()

    assert offered(read_only) == set()
    assert offered(retrier) == {"retry_jobs"}
    assert "delete_selected" not in offered(
        staff_client(*ALL_PERMS, username="all").get(CHANGELIST)
    )


def test_a_user_without_retry_permission_cannot_post_the_action(staff_client, jobs) -> None:
    client = staff_client("view_job", "cancel_job")
    action(client, "retry_jobs", jobs["failed"])
    button = client.post(reverse("admin:jobqueue_job_retry", args=[jobs["failed"].pk]))

    assert button.status_code == 403
    assert Job.objects.get(pk=jobs["failed"].pk).status == JobStatus.FAILED


def test_retry_cancel_and_purge_actions(staff_client, jobs) -> None:
    client = staff_client(*ALL_PERMS)

    retried = action(client, "retry_jobs", jobs["failed"], jobs["succeeded"])
    action(client, "cancel_jobs", jobs["queued"], jobs["running"])
    purged = action(client, "purge_jobs", jobs["succeeded"], jobs["cancelled"], jobs["running"])

    assert "Re-queued 1 jobs" in retried.content.decode()
    failed = Job.objects.get(pk=jobs["failed"].pk)
    assert failed.status == JobStatus.QUEUED and len(failed.errors) == 2  # history kept
    assert Job.objects.get(pk=jobs["queued"].pk).status == JobStatus.CANCELLED
    running = Job.objects.get(pk=jobs["running"].pk)
    assert running.status == JobStatus.RUNNING and running.cancel_requested
    assert "Purged 2 finished jobs" in purged.content.decode()
    assert not Job.objects.filter(pk__in=[jobs["succeeded"].pk, jobs["cancelled"].pk]).exists()


def test_detail_is_read_only_with_json_errors_timeline_and_buttons(staff_client, jobs) -> None:
    failed = jobs["failed"]
    url = reverse("admin:jobqueue_job_change", args=[failed.pk])

    html = staff_client(*ALL_PERMS).get(url).content.decode()
    reader_html = staff_client("view_job", username="reader").get(url).content.decode()

    assert "first disk full" in html and "second disk full" in html
    assert html.count('class="jq-traceback"') == 2
    assert "attempt 1" in html and "attempt 2" in html
    assert "<th>created</th>" in html and "<th>finished</th>" in html
    assert 'id="jq-retry"' in html and 'id="jq-cancel"' not in html
    assert 'name="_save"' not in html  # read-only
    assert 'id="jq-retry"' not in reader_html
    succeeded = staff_client("view_job", username="r2").get(
        reverse("admin:jobqueue_job_change", args=[jobs["succeeded"].pk])
    )
    assert "&quot;answer&quot;: 42" in succeeded.content.decode()


def test_detail_buttons_post_under_their_permission(staff_client, jobs) -> None:
    retry_url = reverse("admin:jobqueue_job_retry", args=[jobs["failed"].pk])
    cancel_url = reverse("admin:jobqueue_job_cancel", args=[jobs["queued"].pk])

    assert staff_client("view_job", username="reader").post(retry_url).status_code == 403
    client = staff_client(*ALL_PERMS)
    assert client.get(retry_url).status_code == 405
    assert client.post(retry_url).status_code == 302
    assert client.post(cancel_url).status_code == 302

    assert Job.objects.get(pk=jobs["failed"].pk).status == JobStatus.QUEUED
    assert Job.objects.get(pk=jobs["queued"].pk).status == JobStatus.CANCELLED


def test_health_page_shows_queues_chart_and_workers(staff_client, jobs) -> None:
    response = staff_client("view_job").get(reverse("admin:jobqueue_job_health"))

    html = response.content.decode()
    assert response.status_code == 200
    queues = {row.queue: row for row in response.context["queues"]}
    assert queues["default"].queued == 1 and queues["reports"].running == 1
    assert queues["default"].failed == 1 and queues["default"].failure_rate == 50.0
    assert "<svg" in html and 'class="jq-bar-fail"' in html
    workers = {w.hostname: w for w in response.context["workers"]}
    assert workers["host-a"].in_hand == 1 and not workers["host-a"].is_lost
    assert workers["host-b"].is_lost and "jq-lost" in html


def test_health_page_needs_view_permission(db) -> None:
    user = User.objects.create_user("nobody", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)

    assert client.get(reverse("admin:jobqueue_job_health")).status_code == 403


def test_a_live_worker_cannot_be_deleted_from_the_admin(db) -> None:
    """Deleting a live worker's row strips its running jobs of their worker: not offered."""
    from datetime import timedelta

    from django.utils import timezone

    from jobqueue.models import Worker

    admin_user = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin_user)
    live = Worker.objects.create(hostname="h", pid=1, concurrency=1)
    lost = Worker.objects.create(
        hostname="h", pid=2, concurrency=1, lost_at=timezone.now() - timedelta(hours=1)
    )
    changelist = client.get(reverse("admin:jobqueue_worker_changelist"))
    assert "delete_selected" not in changelist.content.decode()
    assert client.get(reverse("admin:jobqueue_worker_delete", args=[live.pk])).status_code == 403
    assert client.get(reverse("admin:jobqueue_worker_delete", args=[lost.pk])).status_code == 200


def test_cancel_and_purge_are_refused_without_their_permission(staff_client, jobs) -> None:
    client = staff_client("view_job", "retry_job")

    action(client, "cancel_jobs", jobs["queued"], jobs["running"])
    action(client, "purge_jobs", jobs["succeeded"], jobs["failed"])
    button = client.post(reverse("admin:jobqueue_job_cancel", args=[jobs["queued"].pk]))

    assert button.status_code == 403
    assert Job.objects.get(pk=jobs["queued"].pk).status == JobStatus.QUEUED
    assert not Job.objects.get(pk=jobs["running"].pk).cancel_requested
    assert Job.objects.filter(pk__in=[jobs["succeeded"].pk, jobs["failed"].pk]).count() == 2


def insert_jobs(n: int, queue: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobqueue_job (task, queue, priority, status, args, kwargs, errors,
                progress_message, attempts, max_attempts, cancel_requested, created_at,
                scheduled_at)
            SELECT 'demo.echo', %s, 0, 'queued', '[]', '{}', '[]', '', 0, 1, false, now(), now()
            FROM generate_series(1, %s)
            """,
            [queue, n],
        )


def count_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]


def test_exact_counts_up_to_10000_and_never_a_count_of_the_whole_table(staff_client) -> None:
    """Each count the changelist makes stops at 10,001 rows; past that it shows an estimate."""
    client = staff_client("view_job")
    insert_jobs(10_000, "exact")
    insert_jobs(50, "other")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobqueue_job")

    with CaptureQueriesContext(connection) as exact_queries:
        exact = client.get(CHANGELIST, {"queue": "exact"})
    assert exact.context["cl"].result_count == 10_000
    insert_jobs(1, "exact")
    with CaptureQueriesContext(connection) as beyond_queries:
        beyond = client.get(CHANGELIST, {"queue": "exact"})
        whole = client.get(CHANGELIST)

    assert beyond.context["cl"].result_count > 10_000
    assert whole.context["cl"].result_count > 10_000
    counts = count_queries(exact_queries) + count_queries(beyond_queries)
    assert counts, "the changelist counted nothing"
    unbounded = [sql for sql in counts if "LIMIT 10001" not in sql]
    assert not unbounded, unbounded
