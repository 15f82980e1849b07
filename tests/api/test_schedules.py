"""GET /api/schedules/: the periodic schedules, for staff only, over real HTTP."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from jobqueue.models import Job, Schedule


def test_schedules_are_for_staff_only(api, make_user):
    _, token = make_user()
    assert api.call("GET", "/api/schedules/").status == 401
    assert api.call("GET", "/api/schedules/", token=token).status == 403


def test_schedules_show_the_declaration_the_last_job_and_the_next_run(api, make_user):
    _, token = make_user(staff=True)
    [listed] = api.call("GET", "/api/schedules/", token=token).body
    assert listed["name"] == "nightly-report" and listed["last_job"] is None
    assert (listed["task"], listed["cron"], listed["timezone"], listed["queue"]) == (
        "demo.echo",
        "0 3 * * *",
        "Europe/Berlin",
        "reports",
    )
    next_run = datetime.fromisoformat(listed["next_run_at"])
    local = next_run.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (3, 0)
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(hours=25)

    tick = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    job = Job.objects.create(task="demo.echo", queue="reports", scheduled_at=tick)
    Schedule.objects.filter(name="nightly-report").update(last_tick=tick, last_job=job)
    Schedule.objects.all().disable()
    [listed] = api.call("GET", "/api/schedules/", token=token).body
    assert listed["last_job"] == job.pk
    assert datetime.fromisoformat(listed["last_run_at"]) == tick
    assert listed["enabled"] is False and listed["next_run_at"] is None
