"""progress() from task code, with the real progress connection a worker's child uses."""

import psycopg
import pytest
from django.utils import timezone

import demo
from jobqueue import queries
from jobqueue.db import LazyConnection
from jobqueue.exceptions import LeaseLost
from jobqueue.models import Job
from jobqueue.progress import ProgressReporter, progress, set_reporter
from tests.conftest import database_url

pytestmark = pytest.mark.django_db(transaction=True)


TOKEN = 7


def running_job() -> int:
    """A job held by an attempt with fencing token TOKEN, as a claim leaves it."""
    job_id = int(demo.echo.enqueue().id)
    Job.objects.filter(pk=job_id).update(
        status="running", attempts=1, lease_token=TOKEN, started_at=timezone.now()
    )
    return job_id


@pytest.fixture
def job_id():
    connection = LazyConnection()
    job_id = running_job()
    set_reporter(ProgressReporter(job_id=job_id, token=TOKEN, connection=connection))
    yield job_id
    set_reporter(None)
    connection.cursor().connection.close()


@pytest.mark.parametrize(
    ("message", "stored"),
    [
        ("step 1\x00 of 2", r"step 1\x00 of 2"),
        ("file caf\udce9.csv", r"file caf\udce9.csv"),  # os.fsdecode of b"caf\xe9.csv"
        ("\ud83d\ude00 pair of surrogates", r"\ud83d\ude00 pair of surrogates"),
        ("héllo 😀", "héllo 😀"),
    ],
)
def test_a_message_postgresql_cannot_store_is_spelled_out_not_a_failure(job_id, message, stored):
    progress(10, message)
    assert Job.objects.values_list("progress_message", flat=True).get(pk=job_id) == stored


@pytest.mark.parametrize("message", ["step 1\x00 of 2", "file caf\udce9.csv"])
def test_without_cleaning_the_database_driver_refuses_those_messages(job_id, message):
    with (
        psycopg.connect(database_url(), autocommit=True) as conn,
        conn.cursor() as cursor,
        pytest.raises((psycopg.DataError, UnicodeError)),
    ):
        queries.report_progress(cursor, job_id=job_id, token=TOKEN, percent=None, message=message)


def test_progress_of_an_attempt_that_lost_its_job_is_not_stored_and_stops_it(job_id):
    """Rescued (its token cleared) or claimed again (another token): the old attempt's
    progress() writes nothing and raises LeaseLost, so it stops."""
    Job.objects.filter(pk=job_id).update(lease_token=TOKEN + 1)
    with pytest.raises(LeaseLost, match="no longer holds the job"):
        progress(50, "from the old attempt")
    assert Job.objects.values_list("progress_message", flat=True).get(pk=job_id) == ""
