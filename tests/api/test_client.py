"""jobqueue.client against the real API, and against a real worker running the job."""

import pytest

from jobqueue.client import BadRequest, Client, Conflict, JobFailed, NotFound, Unauthorized


@pytest.fixture
def client(api, make_user) -> Client:
    _, token = make_user()
    return Client(api.base_url, token=token)


@pytest.mark.slow
def test_wait_follows_progress_of_a_running_job_and_returns_its_result(client, start_worker):
    start_worker("--concurrency", "1")
    job = client.submit("demo.progress", kwargs={"steps": 4, "step_seconds": 0.4})
    seen: list[dict] = []
    done = client.wait(job["id"], timeout=60, on_progress=seen.append)
    assert done["status"] == "succeeded"
    assert done["result"] == {"steps": 4}
    messages = [j["progress"]["message"] for j in seen]
    assert any(m.startswith("step ") for m in messages), messages
    assert "running" in {j["status"] for j in seen}


@pytest.mark.slow
def test_result_raises_job_failed_with_the_error(client, start_worker):
    start_worker("--concurrency", "1")
    job = client.submit("demo.fail", kwargs={"message": "on purpose"})
    with pytest.raises(JobFailed) as failed:
        client.result(job["id"], timeout=60)
    assert failed.value.job["error"]["message"] == "on purpose"
    assert "traceback" not in failed.value.job["error"]


def test_typed_errors(client, api):
    with pytest.raises(BadRequest) as bad:
        client.submit("os.system", args=["true"])
    assert "Valid names" in bad.value.detail and bad.value.code == "invalid"
    with pytest.raises(NotFound) as missing:
        client.get(987654)
    assert missing.value.code == "not_found"
    job = client.submit("demo.echo", idempotency_key="k")
    assert client.submit("demo.echo", idempotency_key="k")["id"] == job["id"]
    assert client.cancel(job["id"])["status"] == "cancelled"
    with pytest.raises(Conflict):
        client.cancel(job["id"])
    assert client.retry(job["id"])["status"] == "queued"
    assert client.tasks()[0]["name"] == "demo.echo"
    assert client.queues()[0]["queue"] == "default"
    with pytest.raises(Unauthorized):
        Client(api.base_url, token="wrong").get(job["id"])
