"""unique_key over the API (real gunicorn): a duplicate of a live job is 200 with that job."""

import threading
from concurrent.futures import ThreadPoolExecutor

from jobqueue.models import Job, JobStatus


def submit(api, token, key="daily-42", **extra):
    body = {"task": "demo.echo", "kwargs": {"n": 1}, "unique_key": key, **extra}
    return api.call("POST", "/api/jobs/", body, token=token)


def test_a_duplicate_is_200_with_the_live_job_and_says_so(api, make_user):
    _, token = make_user()
    first = submit(api, token)
    assert first.status == 202 and first.body["duplicate"] is False
    again = submit(api, token, kwargs={"n": 2})
    assert again.status == 200 and again.body["duplicate"] is True
    assert again.body["id"] == first.body["id"] and again.body["kwargs"] == {"n": 1}
    # Another user's key is theirs: a job of their own.
    _, other = make_user()
    theirs = submit(api, other)
    assert theirs.status == 202 and theirs.body["id"] != first.body["id"]
    # Once the job has finished, the key is free again.
    Job.objects.filter(pk=first.body["id"]).update(
        status=JobStatus.FAILED, finished_at=first.body["created_at"]
    )
    fresh = submit(api, token)
    assert fresh.status == 202 and fresh.body["id"] != first.body["id"]
    # A failed job whose key a live job holds is not retried (two live jobs of one key).
    retried = api.call("POST", f"/api/jobs/{first.body['id']}/retry/", token=token)
    assert retried.status == 409 and "unique" in retried.body["detail"]


def test_parallel_submits_of_one_unique_key_make_one_job(api, make_user):
    _, token = make_user()
    start = threading.Barrier(8)

    def race(_: int):
        start.wait()
        return submit(api, token, key="race")

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(race, range(8)))
    assert sorted(r.status for r in replies) == [200] * 7 + [202]
    assert len({r.body["id"] for r in replies}) == 1
    assert Job.objects.count() == 1
