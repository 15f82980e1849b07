"""The admin's schedule page: last run linked to its job, next run, enable and disable."""

from datetime import timedelta
from unittest import mock

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from jobqueue.models import Job, Schedule
from jobqueue.scheduling.periodic import PeriodicSchedule

PERIODIC = {"nightly-report": {"task": "demo.echo", "cron": "@daily", "timezone": "Europe/Berlin"}}
URL = reverse("admin:jobqueue_schedule_changelist")


@pytest.fixture(autouse=True)
def declared():
    with override_settings(JOBQUEUE={"PERIODIC": PERIODIC}):
        yield


def test_the_list_shows_every_declared_schedule_its_last_job_and_next_run(staff_client):
    client = staff_client("view_schedule")
    page = client.get(URL).content.decode()
    assert "nightly-report" in page and "demo.echo" in page and "Europe/Berlin" in page
    job = Job.objects.create(task="demo.echo", scheduled_at=timezone.now() - timedelta(hours=1))
    Schedule.objects.filter(name="nightly-report").update(last_job=job)
    page = client.get(URL).content.decode()
    assert reverse("admin:jobqueue_job_change", args=[job.pk]) in page


def test_disable_and_enable_are_kept_in_the_database(staff_client):
    client = staff_client("view_schedule", "change_schedule")
    client.get(URL)
    before = Schedule.objects.get().last_tick
    action = {"_selected_action": ["nightly-report"], "index": 0}
    client.post(URL, {**action, "action": "disable_schedules"})
    assert Schedule.objects.get().enabled is False
    assert "off" in client.get(URL).content.decode()
    client.post(URL, {**action, "action": "enable_schedules"})
    row = Schedule.objects.get()
    assert row.enabled and row.last_tick > before  # ticks missed while off do not fire


def test_switching_needs_the_change_permission(staff_client):
    client = staff_client("view_schedule")
    client.get(URL)
    action = {"_selected_action": ["nightly-report"], "index": 0, "action": "disable_schedules"}
    client.post(URL, action)
    assert Schedule.objects.get().enabled is True


def test_the_list_reads_each_schedules_declaration_once(staff_client):
    client = staff_client("view_schedule")
    periodic = {**PERIODIC, "hourly-sync": {"task": "demo.echo", "cron": "@hourly"}}
    with (
        override_settings(JOBQUEUE={"PERIODIC": periodic}),
        mock.patch.object(
            PeriodicSchedule, "from_settings", wraps=PeriodicSchedule.from_settings
        ) as parse,
    ):
        page = client.get(URL).content.decode()
    assert "nightly-report" in page and "hourly-sync" in page
    assert sorted(call.args[0] for call in parse.call_args_list) == [
        "hourly-sync",
        "nightly-report",
    ]
