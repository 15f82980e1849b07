"""State changes that race: duplicate idempotent submits, and a cancel against a claim."""

import threading
from concurrent.futures import ThreadPoolExecutor

from jobqueue import db, queries
from jobqueue.models import Job, JobStatus, Worker


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


def race_cancel_against_claim(api, token: str, conn, worker_id: int, job_id: int):
    """Start a claim and an API cancel of ``job_id`` at once; returns (claimed rows, reply)."""
    start = threading.Barrier(2)

    def claim() -> list[tuple]:
        start.wait()
        with conn.cursor() as cursor:
            queries.claim(cursor, worker=worker_id, demand=1, queues=[])
            return queries.claimed(cursor)

    def cancel():
        start.wait()
        return api.call("POST", f"/api/jobs/{job_id}/cancel/", token=token)

    with ThreadPoolExecutor(2) as pool:
        claiming = pool.submit(claim)
        reply = pool.submit(cancel).result()
        return claiming.result(), reply


def test_cancel_racing_a_claim_is_one_or_the_other(api, make_user):
    """The cancel wins (cancelled, never claimed) or the claim does (running, asked to stop)."""
    _, token = make_user()
    worker = Worker.objects.create(hostname="h", pid=1, concurrency=1)
    with db.connect() as conn:
        for _ in range(15):
            job_id = api.call("POST", "/api/jobs/", {"task": "demo.echo"}, token=token).body["id"]
            claimed, reply = race_cancel_against_claim(api, token, conn, worker.pk, job_id)
            job = Job.objects.get(pk=job_id)
            if claimed:
                assert [row[0] for row in claimed] == [job_id]
                assert job.status == JobStatus.RUNNING and job.cancel_requested
                assert reply.status == 202 and reply.body["status"] == "running"
                Job.objects.filter(pk=job_id).update(
                    status=JobStatus.CANCELLED, finished_at=job.started_at
                )
            else:
                assert job.status == JobStatus.CANCELLED and job.attempts == 0
                assert reply.status == 200 and reply.body["status"] == "cancelled"


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
