"""Connections a task leaves busy or in a transaction are reset; idle ones are left alone.

Real PostgreSQL and real SIGALRMs: the executor's JobClock interrupts a query
exactly as it interrupts a task at its timeout, and another connection
watches ``pg_stat_activity`` to see whether the server still runs the query.
"""

import signal
import time

import psycopg
import pytest
from django.db import DatabaseError, OperationalError, connection, transaction

from jobqueue.db import LazyConnection
from jobqueue.exceptions import JobTimeout
from jobqueue.models import Job
from jobqueue.progress import ProgressReporter, progress, set_reporter
from jobqueue.worker.executor import JobClock
from jobqueue.worker.hygiene import ConnectionHygiene
from tests.conftest import database_url
from tests.test_progress import TOKEN, running_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock():
    clock = JobClock()
    yield clock
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


@pytest.fixture
def hygiene():
    progress_connection = LazyConnection()
    yield ConnectionHygiene(progress_connection)
    progress_connection.discard_if_unclean()
    progress_connection.cursor().connection.close()


@pytest.fixture
def observer():
    with psycopg.connect(database_url(), autocommit=True) as conn:
        yield conn


def activity(observer, pid):
    """(state, query) of the server process ``pid``, or None once it has exited."""
    return observer.execute(
        "SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid]
    ).fetchone()


def assert_stops_within_2s(observer, pid):
    deadline = time.monotonic() + 2
    while (row := activity(observer, pid)) is not None and row[0] == "active":
        assert time.monotonic() < deadline, f"the server still runs {row[1]!r}"
        time.sleep(0.05)


def django_pid():
    connection.ensure_connection()
    return connection.connection.info.backend_pid


def one(sql="SELECT 1"):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_a_query_interrupted_by_the_timeout_is_cancelled_and_its_connection_replaced(
    clock, hygiene, observer
):
    pid = django_pid()
    clock.start(0.2)
    with pytest.raises(JobTimeout), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(30)")
    assert activity(observer, pid) == ("active", "SELECT pg_sleep(30)")
    with pytest.raises(OperationalError, match="another command is already in progress"):
        one()  # what the next job would get without the reset
    hygiene.reset()
    assert_stops_within_2s(observer, pid)
    assert one() == 1
    assert django_pid() != pid


def test_a_query_django_closed_in_atomic_is_cancelled_on_the_server(clock, hygiene, observer):
    pid = django_pid()
    clock.start(0.2)
    with pytest.raises(JobTimeout), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(30)")
    assert django_pid() != pid, "Django closed it when its rollback failed"
    assert activity(observer, pid) == ("active", "SELECT pg_sleep(30)")  # but it runs on
    hygiene.reset()
    assert_stops_within_2s(observer, pid)
    assert one() == 1


def test_a_progress_report_interrupted_while_it_waits_for_a_lock_is_cancelled(
    clock, hygiene, observer
):
    job_id = running_job()
    reporter = ProgressReporter(job_id=job_id, token=TOKEN, connection=hygiene.progress_connection)
    pid = hygiene.progress_connection.cursor().connection.info.backend_pid
    set_reporter(reporter)
    try:
        with psycopg.connect(database_url()) as locker:  # a transaction that holds the row
            locker.execute(f"SELECT 1 FROM {Job._meta.db_table} WHERE id = %s FOR UPDATE", [job_id])
            clock.start(0.2)
            with pytest.raises(JobTimeout):
                progress(50, "half way")
            assert activity(observer, pid)[0] == "active"
            hygiene.reset()
            assert_stops_within_2s(observer, pid)
        progress(60, "on again")  # on a new connection
    finally:
        set_reporter(None)
    assert Job.objects.get(pk=job_id).progress_message == "on again"
    assert hygiene.progress_connection.cursor().connection.info.backend_pid != pid


def test_idle_connections_are_left_open_and_not_queried(hygiene, observer):
    pid = django_pid()
    raw = connection.connection
    one("SELECT 'django before reset'")
    progress_conn = hygiene.progress_connection.cursor().connection
    progress_conn.execute("SELECT 'progress before reset'")
    hygiene.reset()
    assert connection.connection is raw
    assert hygiene.progress_connection.cursor().connection is progress_conn
    assert activity(observer, pid) == ("idle", "SELECT 'django before reset'")
    assert activity(observer, progress_conn.info.backend_pid) == (
        "idle",
        "SELECT 'progress before reset'",
    )


def test_a_transaction_left_open_or_failed_is_ended_by_a_new_connection(hygiene, observer):
    pid = django_pid()
    connection.set_autocommit(False)  # a task that turned autocommit off and raised
    hygiene.reset()
    assert connection.get_autocommit()
    assert django_pid() != pid

    pid = django_pid()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")  # a task's own transaction, then an error in it
        with pytest.raises(DatabaseError):
            cursor.execute("SELECT 1 / 0")
    hygiene.reset()
    assert one() == 1
    assert django_pid() != pid

    progress_conn = hygiene.progress_connection.cursor().connection
    progress_conn.execute("BEGIN")
    hygiene.reset()
    assert hygiene.progress_connection.cursor().connection is not progress_conn
    assert activity(observer, pid) is None or activity(observer, pid)[0] != "idle in transaction"


def test_the_callers_own_atomic_block_is_left_to_it(hygiene):
    with transaction.atomic():
        raw = connection.connection
        txid = one("SELECT txid_current()")
        hygiene.reset()
        assert connection.connection is raw
        assert one("SELECT txid_current()") == txid


def test_a_connection_the_server_cut_during_the_task_is_replaced(hygiene, observer):
    pid = django_pid()
    observer.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(DatabaseError):
        one()  # the task saw the error; Django still holds the dead connection
    hygiene.reset()
    assert one() == 1
    assert django_pid() != pid


def test_a_connection_the_task_closed_idle_is_harmless(hygiene):
    one()
    connection.close()
    hygiene.reset()  # sends a cancel request to a server process that has exited
    assert one() == 1
    hygiene.reset()
    assert one() == 1
