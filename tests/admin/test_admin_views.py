"""What staff read in the admin: scheduled jobs apart, one time format, workers and their jobs."""

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from jobqueue.models import Job, JobStatus, Worker
from tests.admin.test_job_admin import ALL_PERMS, CHANGELIST, listed_ids

# The site's one format: date, time with seconds, time zone.
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def test_scheduled_jobs_have_their_own_filter_badge_and_time_until_due(staff_client, jobs) -> None:
    later = Job.objects.create(task="demo.echo", scheduled_at=timezone.now() + timedelta(minutes=5))
    client = staff_client("view_job")

    scheduled = client.get(CHANGELIST, {"status": "scheduled"})
    queued = client.get(CHANGELIST, {"status": "queued"})

    assert listed_ids(scheduled) == {later.pk}
    assert listed_ids(queued) == {later.pk, jobs["queued"].pk}
    html = scheduled.content.decode()
    assert '<span class="jq-status jq-scheduled">Scheduled</span>' in html
    assert re.search(r'<td class="field-due"><span title="[^"]+ UTC">in 4 min 5\d s</span>', html)
    # The chosen value is highlighted, as ?status=running is too.
    assert re.search(r'<li class="selected">\s*<a href="\?status=scheduled"', html)
    running = client.get(CHANGELIST, {"status": "running"}).content.decode()
    assert re.search(r'<li class="selected">\s*<a href="\?status=running"', running)


def test_times_have_seconds_and_a_time_zone_and_the_timeline_says_how_long_ago(
    staff_client, jobs
) -> None:
    client = staff_client("view_job")

    listing = client.get(CHANGELIST).content.decode()
    detail = client.get(reverse("admin:jobqueue_job_change", args=[jobs["failed"].pk]))

    created = re.search(r'<td class="field-created_at[^"]*">([^<]+)</td>', listing)
    assert created and STAMP.fullmatch(created.group(1)), created
    html = detail.content.decode()
    assert re.search(r"<strong>attempt 1</strong> at " + STAMP.pattern, html)
    assert re.search(STAMP.pattern + r'</time> <span class="jq-relative">\(\d+\.\d s ago\)', html)


def test_non_ascii_arguments_are_shown_as_written(staff_client) -> None:
    job = Job.objects.create(task="demo.echo", kwargs={"name": "Müller", "city": "東京"})

    html = staff_client("view_job").get(reverse("admin:jobqueue_job_change", args=[job.pk]))

    assert "&quot;name&quot;: &quot;Müller&quot;" in html.content.decode()
    assert "東京" in html.content.decode() and "\\u00fc" not in html.content.decode()


def test_each_attempt_shows_its_worker_and_a_workers_page_lists_its_jobs(staff_client) -> None:
    now = timezone.now()
    start = now - timedelta(minutes=1)
    gone = Worker.objects.create(
        hostname="host-old", pid=7, concurrency=1, started_at=start, lost_at=now
    )
    here = Worker.objects.create(hostname="host-new", pid=8, concurrency=1, started_at=start)
    run = {"started_at": now.isoformat(), "finished_at": now.isoformat()}
    done = Job.objects.create(
        task="demo.fail",
        status=JobStatus.FAILED,
        started_at=now,
        finished_at=now,
        attempts=2,
        runs=[
            {
                **run,
                "attempt": 1,
                "worker_id": gone.pk,
                "worker": "host-old:7",
                "outcome": "failed",
            },
            {
                **run,
                "attempt": 2,
                "worker_id": here.pk,
                "worker": "host-new:8",
                "outcome": "failed",
            },
        ],
    )
    running = Job.objects.create(
        task="demo.sleep", status=JobStatus.RUNNING, started_at=now, worker=here
    )
    client = staff_client(*ALL_PERMS, "view_worker")

    detail = client.get(reverse("admin:jobqueue_job_change", args=[done.pk])).content.decode()
    worker_page = client.get(reverse("admin:jobqueue_worker_change", args=[here.pk]))
    old_page = client.get(reverse("admin:jobqueue_worker_change", args=[gone.pk]))
    listing = client.get(CHANGELIST).content.decode()

    old_url = reverse("admin:jobqueue_worker_change", args=[gone.pk])
    assert f'<td>1</td><td><a href="{old_url}">host-old:7</a></td>' in detail
    assert '<span class="jq-past">host-new:8</span>' in listing  # the last attempt's worker
    recent = worker_page.content.decode()
    job_url = reverse("admin:jobqueue_job_change", args=[running.pk])
    assert f'<a href="{job_url}">demo.sleep #{running.pk}</a>' in recent
    assert f"demo.fail #{done.pk}</a>" in recent
    assert f"demo.fail #{done.pk}</a>" in old_page.content.decode()
    assert f"demo.sleep #{running.pk}" not in old_page.content.decode()


def test_search_matches_words_as_users_see_them_not_json_text(staff_client, jobs) -> None:
    now = timezone.now()
    xss = Job.objects.create(
        task="demo.fail",
        status=JobStatus.FAILED,
        finished_at=now,
        kwargs={"user_id": 1003, "name": "Müller"},
        errors=[{"attempt": 1, "type": "builtins.ValueError", "message": 'alert("xss")'}],
    )
    client = staff_client("view_job")

    def found(term: str) -> set[int]:
        return listed_ids(client.get(CHANGELIST, {"q": term}))

    assert found('alert("xss")') == {xss.pk}
    assert found("ValueError") == found("builtins.ValueError") == {xss.pk}
    assert found("1003") == found("user_id") == found("müller") == {xss.pk}
    assert found("second disk") == {jobs["failed"].pk}
    assert found("[") == found("type") == found("message") == found("-1") == set()
    assert found("demo.sleep") == found("sleep") == {jobs["running"].pk, jobs["cancelled"].pk}
    assert found(f"#{jobs['queued'].pk}") == {jobs["queued"].pk}


def test_a_job_with_more_words_than_a_tsvector_holds_still_finishes(db) -> None:
    """Arguments over 64 KiB are left out of the search index, which could not hold them
    (1 MB of words): the UPDATE or INSERT of a finished job must never fail on it."""
    words = " ".join(f"w{i}" for i in range(200_000))

    job = Job.objects.create(
        task="demo.echo", status=JobStatus.SUCCEEDED, finished_at=timezone.now(), args=[words]
    )

    assert Job.objects.filter(pk=job.pk).exists()


def test_health_page_has_a_chart_with_axes_and_timings_per_queue_and_task(staff_client) -> None:
    now = timezone.now()

    def finished(task: str, status: str, wait: float, run: float) -> None:
        started = now - timedelta(seconds=run)
        Job.objects.create(
            task=task,
            queue="reports",
            status=status,
            scheduled_at=started - timedelta(seconds=wait),
            started_at=started,
            finished_at=now,
        )

    finished("demo.echo", JobStatus.SUCCEEDED, wait=1, run=2)
    finished("demo.echo", JobStatus.SUCCEEDED, wait=3, run=4)
    finished("demo.fail", JobStatus.FAILED, wait=5, run=6)
    finished("demo.fail", JobStatus.SUCCEEDED, wait=5, run=6)

    response = staff_client("view_job").get(reverse("admin:jobqueue_job_health"))

    html = response.content.decode()
    assert html.count('class="jq-axis" text-anchor="middle"') == 7 * 3  # 3 charts, 7 times each
    assert "jobs / min" in html
    (queue,) = response.context["timings"]["queue"]
    assert queue.name == "reports" and queue.wait[0] == 4.0 and queue.run[0] == 5.0
    tasks = {t.name: t for t in response.context["timings"]["task"]}
    assert tasks["demo.echo"].wait[0] == 2.0 and tasks["demo.echo"].failure_rate == 0
    assert tasks["demo.fail"].run[2] == 6.0 and tasks["demo.fail"].failure_rate == 50.0
    assert '<table id="jq-timings-task"' in html


def test_queue_depth_is_sampled_once_a_minute_charted_and_pruned_by_purge(
    staff_client, jobs
) -> None:
    from django.db import connection

    from jobqueue import health, queries
    from jobqueue.models import QueueSample
    from jobqueue.purge import PurgePlan, purge

    # The test's transaction fixes now(): the fixture's queued job is made due before it.
    Job.objects.filter(pk=jobs["queued"].pk).update(scheduled_at=timezone.now() - timedelta(1))
    Job.objects.create(task="demo.echo", scheduled_at=timezone.now() + timedelta(hours=1))
    old = timezone.now() - timedelta(days=3)
    QueueSample.objects.create(minute=old, queue="", ready=1, scheduled=0, running=0)

    response = staff_client("view_job").get(reverse("admin:jobqueue_job_health"))
    Job.objects.create(task="demo.echo")  # a second sample this minute would count it
    with connection.cursor() as cursor:
        queries.record_sample(cursor)

    now = QueueSample.objects.filter(minute__gt=old)
    assert {(s.queue, s.ready, s.scheduled, s.running) for s in now} == {
        ("", 1, 1, 1),
        ("default", 1, 1, 0),
        ("reports", 0, 0, 1),
    }
    html = response.content.decode()
    assert html.count('class="jq-line jq-line-ready"') == 2  # the last hour and the last day
    assert health.depth(timedelta(hours=1), timedelta(minutes=1))[0].scheduled == 1
    purge(PurgePlan.retention())
    assert not QueueSample.objects.filter(minute=old).exists()
    assert QueueSample.objects.filter(minute__gt=old).count() == 3


def test_the_job_page_links_its_live_page_for_the_jobs_owner_only(staff_client) -> None:
    from django.contrib.auth.models import User

    client = staff_client("view_job")
    staff = User.objects.get(username="staff")
    own = Job.objects.create(task="demo.echo", owner=staff)
    other = Job.objects.create(task="demo.echo", owner=User.objects.create_user("someone"))

    mine = client.get(reverse("admin:jobqueue_job_change", args=[own.pk])).content.decode()
    theirs = client.get(reverse("admin:jobqueue_job_change", args=[other.pk])).content.decode()

    assert f'<a href="/jobs/{own.pk}/" id="jq-live-page">' in mine
    assert 'id="jq-live-page"' not in theirs
