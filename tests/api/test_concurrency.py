"""State changes that race: duplicate idempotent submits, and a cancel against a claim."""

import threading
from concurrent.futures import ThreadPoolExecutor

from jobqueue import db, queries
from jobqueue.models import Job, JobStatus, Worker
from tests.conftest import wait_until, waits_for_lock_of


def test_parallel_duplicate_submits_make_one_job(api, make_user):
    _, token = make_user()
    start = threading.Barrier(8)

    def submit(_: int):
        start.wait()
        return api.call(
            "POST",
            "/api/jobs/",
            {"task": "demo.echo"},
            token=token,
            headers={"Idempotency-Key": "once"},
        )

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(submit, range(8)))
    assert sorted(r.status for r in replies) == [200] * 7 + [202]
    assert len({r.body["id"] for r in replies}) == 1
    assert Job.objects.count() == 1


def test_cancel_that_holds_the_row_while_a_claim_runs_wins(api, make_user):
    """Order forced with a held row lock: the cancel has the row (the lock stands in for its
    transaction), a claim runs meanwhile and passes over it at once, then the cancel commits:
    cancelled, never claimed, no attempt charged."""
    _, token = make_user()
    job_id = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=token).body["id"]
    worker = Worker.objects.create(hostname="h", pid=1, concurrency=1)
    with db.connect() as holder, db.connect() as claimer, ThreadPoolExecutor(1) as pool:
        claimer.execute("SET lock_timeout = '2s'")  # a claim that waited would fail here
        with holder.transaction():
            holder.execute("SELECT 1 FROM jobqueue_job WHERE id = %s FOR UPDATE", [job_id])
            cancelling = pool.submit(api.call, "POST", f"/api/jobs/{job_id}/cancel/", token=token)
            wait_until(
                lambda: waits_for_lock_of(holder.info.backend_pid) or cancelling.done(),
                30,
                "the cancel waits for the held row",
            )
            assert not cancelling.done(), "the cancel waits for the row"
            with claimer.cursor() as cursor:
                queries.claim(cursor, worker=worker.pk, demand=1, queues=[])
                assert queries.claimed(cursor) == []
        reply = cancelling.result(timeout=30)  # the row is released: the cancel goes on
        with claimer.cursor() as cursor:
            queries.claim(cursor, worker=worker.pk, demand=1, queues=[])
            assert queries.claimed(cursor) == []
    assert reply.status == 200 and reply.body["status"] == "cancelled"
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.CANCELLED and job.attempts == 0


def test_cancel_that_waits_on_an_uncommitted_claim_asks_the_running_job_to_stop(api, make_user):
    """Order forced the other way: the claim holds the row uncommitted while the cancel
    arrives. The cancel waits for it, then sees a running job: 202, stop requested."""
    _, token = make_user()
    job_id = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=token).body["id"]
    worker = Worker.objects.create(hostname="h", pid=1, concurrency=1)
    with db.connect() as claimer, ThreadPoolExecutor(1) as pool:
        with claimer.transaction(), claimer.cursor() as cursor:
            queries.claim(cursor, worker=worker.pk, demand=1, queues=[])
            claimed = queries.claimed(cursor)
            cancelling = pool.submit(api.call, "POST", f"/api/jobs/{job_id}/cancel/", token=token)
            wait_until(
                lambda: waits_for_lock_of(claimer.info.backend_pid) or cancelling.done(),
                30,
                "the cancel waits for the claim's transaction",
            )
            assert not cancelling.done(), "the cancel waits for the claim's transaction"
        reply = cancelling.result(timeout=30)
    assert [row[0] for row in claimed] == [job_id]
    assert reply.status == 202 and reply.body["status"] == "running"
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.RUNNING and job.cancel_requested and job.attempts == 1


def test_retry_racing_a_second_retry_requeues_once(api, make_user):
    _, token = make_user()
    job_id = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=token).body["id"]
    api.call("POST", f"/api/jobs/{job_id}/cancel/", token=token)
    start = threading.Barrier(4)

    def retry(_: int):
        start.wait()
        return api.call("POST", f"/api/jobs/{job_id}/retry/", token=token).status

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(retry, range(4)))
    assert codes == [200, 409, 409, 409]
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
