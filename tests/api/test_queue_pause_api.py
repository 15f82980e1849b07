"""POST /api/queues/{name}/pause/ and /resume/ over real HTTP: staff with pause_queue only;
/api/queues/ shows the pause and the limits, also of a queue with no job in it."""

import demo
from jobqueue.models import QueueLimit


def test_pausing_needs_staff_with_the_permission(api, make_user):
    _, user = make_user()
    _, staff = make_user(staff=True)
    for token in (None, user, staff):
        reply = api.call("POST", "/api/queues/reports/pause/", token=token)
        assert reply.status in (401, 403)
    assert api.call("GET", "/api/queues/", token=user).body == []


def test_pause_and_resume_show_in_the_queue_list(api, make_user):
    _, token = make_user(staff=True, perms=("pause_queue",))
    demo.echo.using(queue_name="mail").enqueue()
    reply = api.call("POST", "/api/queues/reports.daily/pause/", token=token)
    assert reply.status == 200 and reply.body == {
        "queue": "reports.daily",
        "paused": True,
        "changed": True,
    }
    again = api.call("POST", "/api/queues/reports.daily/pause/", token=token).body
    assert again["changed"] is False
    listed = {q["queue"]: q for q in api.call("GET", "/api/queues/", token=token).body}
    assert listed["reports.daily"]["paused"] is True and listed["reports.daily"]["paused_at"]
    assert listed["reports.daily"]["counts"]["queued"] == 0
    assert listed["mail"]["paused"] is False and listed["mail"]["counts"]["queued"] == 1

    reply = api.call("POST", "/api/queues/reports.daily/resume/", token=token)
    assert reply.status == 200 and reply.body["paused"] is False and reply.body["changed"]
    assert "reports.daily" not in {
        q["queue"] for q in api.call("GET", "/api/queues/", token=token).body
    }


def test_limits_show_in_the_queue_list(api, make_user):
    """A queue's limits, from settings or a staff override, are in /api/queues/, also for a
    queue with no job in it; an unlimited queue says null."""
    _, token = make_user()
    demo.echo.using(queue_name="mail").enqueue()
    QueueLimit.objects.create(queue="mail", rate=100, per=60.0, source="settings")
    QueueLimit.objects.create(queue="reports", concurrency=2, rate=5, per=2.5, source="admin")
    listed = {q["queue"]: q for q in api.call("GET", "/api/queues/", token=token).body}
    assert listed["mail"]["limits"] == {
        "concurrency": None,
        "rate": "100/min",
        "source": "settings",
    }
    assert listed["mail"]["counts"]["queued"] == 1
    assert listed["reports"]["limits"] == {"concurrency": 2, "rate": "5/2.5s", "source": "admin"}
    assert listed["reports"]["paused"] is False and listed["reports"]["counts"]["queued"] == 0
    assert listed["reports"]["oldest_queued_age_seconds"] is None

    QueueLimit.objects.filter(queue="mail").delete()
    listed = {q["queue"]: q for q in api.call("GET", "/api/queues/", token=token).body}
    assert listed["mail"]["limits"] is None
