"""One queue-name rule, the same at every way in: enqueue, the admin, the commands
(the API trims whitespace first, as DRF does; tests/api/test_bad_input.py has its case).

The rule used to be three regular expressions anchored with ``$``, which also matches
before a trailing newline, so enqueue took "reports\\n" as a queue name that no
worker's ``--queues`` could ever name. Each entry point is asked here for the same
names, with the database checked to hold nothing from a refused one.
"""

import argparse

import pytest
from django.contrib.auth.models import User
from django.tasks.exceptions import InvalidTask

import demo
from jobqueue.management.commands.purge_jobs import queue_name as purge_queue
from jobqueue.management.commands.queues import queue_name as pause_queue
from jobqueue.management.commands.runworker import queue_list
from jobqueue.models import Job, QueuePause
from jobqueue.queue_names import is_queue_name

GOOD = ["a", "reports", "A.b:c-d_e", "9" * 100]
BAD = ["", "reports\n", "\nreports", "re ports", "-reports", "_x", "a" * 101, "é", "a\x00b", "a,b"]


@pytest.mark.parametrize("name", GOOD)
def test_a_good_name_is_accepted_everywhere(name):
    assert is_queue_name(name)
    assert purge_queue(name) == name and pause_queue(name) == name
    assert queue_list(name) == (name,)


@pytest.mark.parametrize("name", BAD)
def test_a_bad_name_is_refused_by_every_command(name):
    assert not is_queue_name(name)
    for check in (purge_queue, pause_queue):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a queue name"):
            check(name)
    if name not in ("", "a,b"):  # "" means every queue to runworker; "a,b" is two names
        with pytest.raises(argparse.ArgumentTypeError, match="queue names"):
            queue_list(f"ok,{name}")


@pytest.mark.django_db
@pytest.mark.parametrize("name", BAD)
def test_enqueue_refuses_a_bad_name_and_stores_nothing(name):
    with pytest.raises(InvalidTask, match="queue name"):
        demo.echo.using(queue_name=name).enqueue()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_admin_will_not_pause_a_bad_name(client):
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    response = client.post("/admin/jobqueue/job/health/reports%0A/pause/")
    assert response.status_code == 404
    assert not QueuePause.objects.exists()
