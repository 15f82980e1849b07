"""Contract tests: every route, status code and field of PRODUCT.md, over real HTTP."""

import threading
import time
from datetime import timedelta

from django.utils import timezone

from jobqueue import db, queries
from jobqueue.models import Job, JobStatus, Worker
from tests.api.conftest import hub_read_since
from tests.conftest import db_now, wait_until

JOB_FIELDS = {
    "id",
    "task",
    "queue",
    "priority",
    "status",
    "progress",
    "args",
    "kwargs",
    "result",
    "error",
    "errors",
    "attempts",
    "max_attempts",
    "cancel_requested",
    "created_at",
    "scheduled_at",
    "started_at",
    "finished_at",
    "elapsed_seconds",
    "position_in_queue",
    "estimated_wait_seconds",
}


def submit(api, token, **body):
    return api.call("POST", "/api/jobs/", {"task": "demo.echo", **body}, token=token)


def test_submit_returns_202_with_location_and_the_job(api, make_user):
    _, token = make_user()
    reply = submit(
        api,
        token,
        kwargs={"x": 1},
        queue="reports",
        priority=7,
        delay_seconds=60,
        max_attempts=4,
        timeout_seconds=30,
    )
    assert reply.status == 202, reply.body
    job = reply.body
    assert set(job) == JOB_FIELDS | {"duplicate"}  # a submission's answer says which it was
    assert job["duplicate"] is False
    assert reply.headers["Location"].endswith(f"/api/jobs/{job['id']}/")
    assert job["task"] == "demo.echo"
    assert (job["queue"], job["priority"], job["max_attempts"]) == ("reports", 7, 4)
    assert job["status"] == "queued"
    assert job["kwargs"] == {"x": 1} and job["args"] == []
    assert job["progress"] == {"percent": None, "message": "", "updated_at": None}
    assert job["error"] is None and job["errors"] == [] and job["result"] is None
    assert job["attempts"] == 0 and job["cancel_requested"] is False
    assert job["scheduled_at"] > job["created_at"]
    assert job["position_in_queue"] == 0
    row = Job.objects.get(pk=job["id"])
    assert row.timeout_seconds == 30


def test_get_own_job_and_others_are_404(api, make_user):
    _, token = make_user()
    _, other = make_user()
    job = submit(api, token).body
    reply = api.call("GET", f"/api/jobs/{job['id']}/", token=token)
    assert reply.status == 200 and reply.body["id"] == job["id"]
    assert set(reply.body) == JOB_FIELDS
    assert api.call("GET", f"/api/jobs/{job['id']}/", token=other).status == 404
    assert api.call("POST", f"/api/jobs/{job['id']}/cancel/", token=other).status == 404
    assert api.call("POST", f"/api/jobs/{job['id']}/retry/", token=other).status == 404
    assert api.call("DELETE", f"/api/jobs/{job['id']}/", token=other).status == 404
    assert Job.objects.get(pk=job["id"]).status == JobStatus.QUEUED


def test_staff_with_permissions_see_and_act_on_all_jobs(api, make_user):
    _, token = make_user()
    _, viewer = make_user(staff=True, perms=("view_job",))
    _, operator = make_user(staff=True, perms=("view_job", "cancel_job"))
    _, plain_staff = make_user(staff=True)
    job = submit(api, token).body
    path = f"/api/jobs/{job['id']}/"
    assert api.call("GET", path, token=plain_staff).status == 404
    assert api.call("GET", path, token=viewer).status == 200
    assert api.call("POST", path + "cancel/", token=viewer).status == 403
    assert Job.objects.get(pk=job["id"]).status == JobStatus.QUEUED
    assert api.call("POST", path + "cancel/", token=operator).status == 200


def test_traceback_is_shown_to_staff_only(api, make_user):
    _, token = make_user()
    _, staff = make_user(staff=True, perms=("view_job",))
    job = submit(api, token).body
    shown = {
        "attempt": 1,
        "type": "builtins.ValueError",
        "message": "bad",
        "at": "2026-11-30T09:00:00+00:00",
        "worker": "host:12",
    }
    Job.objects.filter(pk=job["id"]).update(
        status=JobStatus.FAILED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        errors=[{**shown, "traceback": "TB"}],
        attempts=1,
    )
    mine = api.call("GET", f"/api/jobs/{job['id']}/", token=token).body
    assert mine["error"] == shown
    assert "traceback" not in mine["errors"][0]
    assert mine["elapsed_seconds"] >= 0 and mine["position_in_queue"] is None
    theirs = api.call("GET", f"/api/jobs/{job['id']}/", token=staff).body
    assert theirs["error"]["traceback"] == "TB"


def test_list_is_own_jobs_newest_first_filtered_and_paginated(api, make_user):
    _, token = make_user()
    _, other = make_user()
    ids = [submit(api, token, queue=f"q{i % 2}").body["id"] for i in range(5)]
    submit(api, other)
    reply = api.call("GET", "/api/jobs/", token=token)
    assert reply.status == 200
    assert [j["id"] for j in reply.body["results"]] == ids[::-1]
    assert {"next", "previous", "results"} <= set(reply.body)
    assert [
        j["id"] for j in api.call("GET", "/api/jobs/?queue=q1", token=token).body["results"]
    ] == [
        ids[3],
        ids[1],
    ]
    assert api.call("GET", "/api/jobs/?status=running", token=token).body["results"] == []
    assert len(api.call("GET", "/api/jobs/?task=demo.echo", token=token).body["results"]) == 5
    page = api.call("GET", "/api/jobs/?page_size=2", token=token).body
    assert [j["id"] for j in page["results"]] == ids[:-3:-1]
    following = api.call("GET", page["next"].removeprefix(api.base_url), token=token).body
    assert [j["id"] for j in following["results"]] == [ids[2], ids[1]]


def test_idempotency_key_in_body_or_header_returns_the_original_with_200(api, make_user):
    _, token = make_user()
    _, other = make_user()
    first = submit(api, token, idempotency_key="k1")
    again = submit(api, token, idempotency_key="k1", kwargs={"different": True})
    by_header = api.call(
        "POST", "/api/jobs/", {"task": "demo.echo"}, token=token, headers={"Idempotency-Key": "k1"}
    )
    assert first.status == 202
    assert again.status == 200 and again.body["id"] == first.body["id"]
    assert by_header.status == 200 and by_header.body["id"] == first.body["id"]
    theirs = submit(api, other, idempotency_key="k1")
    assert theirs.status == 202 and theirs.body["id"] != first.body["id"]
    assert Job.objects.count() == 2


def test_cancel_queued_then_409_then_retry_then_409(api, make_user):
    _, token = make_user()
    job = submit(api, token).body
    path = f"/api/jobs/{job['id']}/"
    cancelled = api.call("POST", path + "cancel/", token=token)
    assert cancelled.status == 200
    assert cancelled.body["status"] == "cancelled" and cancelled.body["cancel_requested"]
    assert cancelled.body["error"]["type"] == "jobqueue.exceptions.JobCancelled"
    again = api.call("POST", path + "cancel/", token=token)
    assert again.status == 409 and again.body["code"] == "conflict"
    assert again.body["detail"].startswith("The job was cancelled; only queued or running")
    retried = api.call("POST", path + "retry/", token=token)
    assert retried.status == 200 and retried.body["status"] == "queued"
    assert retried.body["attempts"] == 0 and len(retried.body["errors"]) == 1
    not_again = api.call("POST", path + "retry/", token=token)
    assert not_again.status == 409
    assert not_again.body["detail"].startswith("The job is queued; only failed or cancelled")
    Job.objects.filter(pk=job["id"]).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    done = api.call("POST", path + "cancel/", token=token)
    assert done.status == 409 and done.body["detail"].startswith("The job has succeeded;")


def test_delete_cancels_and_never_deletes(api, make_user):
    _, token = make_user()
    job = submit(api, token).body
    reply = api.call("DELETE", f"/api/jobs/{job['id']}/", token=token)
    assert reply.status == 200 and reply.body["status"] == "cancelled"
    assert Job.objects.filter(pk=job["id"], status=JobStatus.CANCELLED).exists()


def test_cancel_running_job_is_a_request_202(api, make_user):
    _, token = make_user()
    job = submit(api, token).body
    claim_one(Worker.objects.create(hostname="h", pid=1, concurrency=1))
    reply = api.call("POST", f"/api/jobs/{job['id']}/cancel/", token=token)
    assert reply.status == 202
    assert reply.body["status"] == "running" and reply.body["cancel_requested"] is True


def reply_to_change(api, token: str, job_id: int, change) -> tuple[object, float]:
    """Long-poll ``job_id`` (``wait=10``), make ``change()`` once the request waits; the reply
    and how many seconds after the change it came. The poll thread is a daemon: without the
    wake-up it would hold 10 s, and the test fails without waiting for it.

    "The request waits" is read from the database: the server's event hub has read the job
    for its new watcher (``hub_read_since``), so the view's answer is out of the way and
    the change comes after it."""
    sent_after = db_now()
    replies = []
    poll = threading.Thread(
        target=lambda: replies.append(
            (api.call("GET", f"/api/jobs/{job_id}/?wait=10", token=token), time.monotonic())
        ),
        daemon=True,
    )
    poll.start()
    wait_until(lambda: hub_read_since(sent_after) or replies, 30, "the long-poll is waiting")
    assert not replies, "the long-poll answered before anything changed"
    change()
    changed_at = time.monotonic()
    poll.join(timeout=5)
    assert replies, "no reply within 5 s of the change"
    [(reply, replied_at)] = replies
    return reply, replied_at - changed_at


def claim_one(worker: Worker) -> int:
    """Claim the next job for ``worker``, as a worker would; its fencing token."""
    with db.connect() as conn, conn.cursor() as cursor:
        queries.claim(cursor, worker=worker.pk, demand=1, queues=[])
        return queries.claimed(cursor)[0][-1]


def test_long_poll_returns_when_progress_changes(api, make_user):
    """The reply comes within 2 s of the change (the NOTIFY), not at the end of ``wait=10``."""
    _, token = make_user()
    job = submit(api, token).body
    lease_token = claim_one(Worker.objects.create(hostname="h", pid=1, concurrency=1))

    def change() -> None:
        with db.connect() as conn, conn.cursor() as cursor:
            queries.report_progress(
                cursor, job_id=job["id"], token=lease_token, percent=50, message="half way"
            )

    reply, after = reply_to_change(api, token, job["id"], change)
    assert reply.status == 200
    assert after < 2, f"replied {after:.1f} s after the change"
    assert reply.body["progress"]["message"] == "half way"
    assert reply.body["progress"]["percent"] == 50


def test_long_poll_on_a_finished_job_returns_at_once(api, make_user):
    _, token = make_user()
    job = submit(api, token).body
    api.call("POST", f"/api/jobs/{job['id']}/cancel/", token=token)
    reply = api.call("GET", f"/api/jobs/{job['id']}/?wait=30", token=token, timeout=5)
    assert reply.status == 200 and reply.body["status"] == "cancelled"


def test_tasks_lists_exposed_tasks_and_their_arguments(api, make_user):
    _, token = make_user()
    reply = api.call("GET", "/api/tasks/", token=token)
    assert reply.status == 200
    tasks = {t["name"]: t for t in reply.body}
    assert set(tasks) == {
        "demo.echo",
        "demo.sleep",
        "demo.fail",
        "demo.crash",
        "demo.progress",
        "demo.wait",
    }
    (seconds,) = tasks["demo.sleep"]["parameters"]
    assert seconds == {
        "name": "seconds",
        "kind": "positional_or_keyword",
        "required": False,
        "default": 5,
        "type": "number",
    }
    assert tasks["demo.sleep"]["description"].startswith("Sleep")


def test_queues_figures(api, make_user):
    _, token = make_user()
    for _ in range(3):
        submit(api, token, queue="alpha")
    done = submit(api, token, queue="alpha").body
    now = timezone.now()
    Job.objects.filter(pk=done["id"]).update(
        status=JobStatus.SUCCEEDED,
        started_at=now - timezone.timedelta(seconds=4),
        finished_at=now,
    )
    reply = api.call("GET", "/api/queues/", token=token)
    assert reply.status == 200
    (alpha,) = [q for q in reply.body if q["queue"] == "alpha"]
    assert alpha["counts"] == {
        "queued": 3,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert alpha["ready"] == 3 and alpha["running"] == 0
    assert alpha["oldest_queued_age_seconds"] >= 0
    assert alpha["last_5_minutes"]["finished"] == 1
    assert alpha["last_5_minutes"]["throughput_per_minute"] == 0.2
    assert abs(alpha["last_60_minutes"]["mean_duration_seconds"] - 4) < 0.01


def test_estimated_wait_uses_live_workers_and_recent_durations(api, make_user):
    _, token = make_user()
    Worker.objects.create(hostname="h", pid=1, concurrency=2, queues=["beta"])
    now = timezone.now()
    done = submit(api, token, queue="beta").body
    Job.objects.filter(pk=done["id"]).update(
        status=JobStatus.SUCCEEDED, started_at=now - timezone.timedelta(seconds=10), finished_at=now
    )
    ids = [submit(api, token, queue="beta").body["id"] for _ in range(5)]
    last = api.call("GET", f"/api/jobs/{ids[-1]}/", token=token).body
    assert last["position_in_queue"] == 4
    assert abs(last["estimated_wait_seconds"] - 4 * 10 / 2) < 0.5


def test_workers_for_staff_only(api, make_user):
    _, token = make_user()
    _, staff = make_user(staff=True)
    worker = Worker.objects.create(hostname="host-a", pid=42, concurrency=3, queues=["a"])
    assert api.call("GET", "/api/workers/", token=token).status == 403
    reply = api.call("GET", "/api/workers/", token=staff)
    assert reply.status == 200
    (row,) = reply.body
    assert row["id"] == worker.pk and row["host"] == "host-a" and row["pid"] == 42
    assert row["queues"] == ["a"] and row["concurrency"] == 3
    assert row["state"] == "live" and row["jobs_in_hand"] == []
    assert {"started_at", "last_heartbeat", "lost_at"} <= set(row)


def test_health_schema_docs_and_anonymous(api, make_user):
    health = api.call("GET", "/api/health/")
    assert health.status == 200
    assert health.body["status"] == "ok" and health.body["database"]["ok"] is True
    schema = api.call("GET", "/api/schema/?format=json")
    assert schema.status == 200 and "/api/jobs/{id}/cancel/" in schema.body["paths"]
    assert api.call("GET", "/api/docs/", headers={"Accept": "text/html"}).status == 200
    for method, path in [
        ("GET", "/api/jobs/"),
        ("POST", "/api/jobs/"),
        ("GET", "/api/jobs/1/"),
        ("GET", "/api/tasks/"),
        ("GET", "/api/queues/"),
        ("GET", "/api/workers/"),
    ]:
        reply = api.call(method, path)
        assert reply.status == 401, (method, path)
        assert "credentials" in reply.body["detail"]
    assert api.call("GET", "/api/jobs/1/", token="0" * 40).status == 401
    assert Job.objects.count() == 0


def test_long_poll_returns_when_the_job_is_claimed(api, make_user):
    """The claim announces the job on the events channel: a watcher sees it start."""
    _, token = make_user()
    job = submit(api, token).body
    worker = Worker.objects.create(hostname="h", pid=1, concurrency=1)
    reply, after = reply_to_change(api, token, job["id"], lambda: claim_one(worker))
    assert reply.body["status"] == "running"
    assert after < 2, f"replied {after:.1f} s after the claim"


def test_long_poll_returns_when_the_job_is_rescued(api, make_user):
    """The rescue announces the jobs it takes back: a watcher sees its job change."""
    _, token = make_user()
    job = submit(api, token).body
    claim_one(Worker.objects.create(hostname="h", pid=1, concurrency=1))
    Job.objects.filter(pk=job["id"]).update(heartbeat_at=timezone.now() - timedelta(minutes=5))

    def rescue() -> None:
        with db.connect() as conn, conn.cursor() as cursor:
            assert queries.rescue(cursor, lease=30)

    reply, after = reply_to_change(api, token, job["id"], rescue)
    assert reply.body["status"] != "running"  # queued, or failed: no attempt left
    assert after < 2, f"replied {after:.1f} s after the rescue"
