"""progress() from task code, with the real progress connection a worker's child uses."""

import psycopg
import pytest

import demo
from jobqueue import queries
from jobqueue.db import LazyConnection
from jobqueue.models import Job
from jobqueue.progress import ProgressReporter, progress, set_reporter
from tests.conftest import database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job_id():
    connection = LazyConnection()
    job_id = int(demo.echo.enqueue().id)
    set_reporter(ProgressReporter(job_id=job_id, connection=connection))
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
        queries.report_progress(cursor, job_id=job_id, percent=None, message=message)
