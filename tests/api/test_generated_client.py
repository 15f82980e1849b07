"""A client generated from the live schema (openapi-python-client) tours the API; all answers parse.

The generator reads ``/api/schema/`` from the running gunicorn, writes a typed package into the
test's folder, and the tour drives a real worker through it: submit (and the same key again),
long-poll a job's progress to the end, cancel, retry, cancel again into a 409, list with filters,
tasks, queues, workers, health. Each answer must have the status the schema gives it and parse
into its model with no field left over: a schema that lies about a field makes it fail here
first.
"""

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "jobqueue_api_client"

pytestmark = pytest.mark.skipif(
    not GENERATOR.exists(),
    reason="openapi-python-client is not installed (pip install -e '.[dev]' installs it)",
)


def generate(schema_url: str, folder: Path) -> None:
    """Run the generator as a user would, with the venv's tools (its ruff) on PATH."""
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(GENERATOR), "generate", "--url", schema_url, "--meta", "none"]
    done = subprocess.run(
        [*command, "--output-path", str(folder / PACKAGE)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr


def load(folder: Path) -> dict[str, ModuleType]:
    sys.path.insert(0, str(folder))
    names = ["client", "models", "types"] + [
        f"api.{group}.{name}"
        for group, name in [
            ("jobs", "jobs_create"),
            ("jobs", "jobs_retrieve"),
            ("jobs", "jobs_list"),
            ("jobs", "jobs_cancel_create"),
            ("jobs", "jobs_retry_create"),
            ("jobs", "jobs_destroy"),
            ("tasks", "tasks_list"),
            ("queues", "queues_list"),
            ("workers", "workers_list"),
            ("health", "health_retrieve"),
        ]
    ]
    return {name.rsplit(".", 1)[-1]: importlib.import_module(f"{PACKAGE}.{name}") for name in names}


@pytest.fixture
def generated(api, tmp_path):
    generate(f"{api.base_url}/api/schema/", tmp_path)
    yield load(tmp_path)
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def parsed(response: Any, status: int, model: type) -> Any:
    """The parsed body, after checking the status and that every field found its place."""
    assert response.status_code == status, response.content
    body = response.parsed
    for item in body if isinstance(body, list) else [body]:
        assert isinstance(item, model), (type(item), response.content)
        assert not item.additional_properties, (model, item.additional_properties)
    return body


@pytest.mark.slow
def test_a_generated_client_tours_the_api(api, generated, make_user, start_worker):
    import httpx  # installed with the generator, which the generated client needs

    g, m = generated, generated["models"]
    _, token = make_user(staff=True, perms=("view_job", "cancel_job", "retry_job"))
    client = g["client"].AuthenticatedClient(
        base_url=api.base_url,
        token=token,
        prefix="Token",
        timeout=httpx.Timeout(45),
        raise_on_unexpected_status=True,
    )
    start_worker("--concurrency", "2", "--queues", "default")  # "parked" is left alone

    # submit, and the same key again
    body = m.JobSubmitRequest(
        task=m.TaskEnum.DEMO_PROGRESS,
        kwargs=m.JobSubmitRequestKwargs.from_dict({"steps": 3, "step_seconds": 0.4}),
    )
    created = g["jobs_create"].sync_detailed(client=client, body=body, idempotency_key="tour")
    job = parsed(created, 202, m.SubmittedJob)
    assert not job.duplicate
    assert job.status == m.JobStatusEnum.QUEUED and created.headers["Location"].endswith(
        f"/api/jobs/{job.id}/"
    )
    again = g["jobs_create"].sync_detailed(client=client, body=body, idempotency_key="tour")
    repeated = parsed(again, 200, m.SubmittedJob)
    assert (repeated.id, repeated.duplicate) == (job.id, True)

    # long-poll it to the end, seeing its progress
    messages = set()
    deadline = time.monotonic() + 60
    while job.status != m.JobStatusEnum.SUCCEEDED and time.monotonic() < deadline:
        polled = g["jobs_retrieve"].sync_detailed(client=client, id=job.id, wait=10)
        job = parsed(polled, 200, m.Job)
        messages.add(job.progress.message)
        assert job.progress.percent is None or 0 <= job.progress.percent <= 100
    assert job.status == m.JobStatusEnum.SUCCEEDED, job
    assert job.result == {"steps": 3} and job.position_in_queue is None
    assert any(message.startswith("step") for message in messages), messages

    # cancel a job no worker serves, retry it, cancel it again (DELETE), and once more: 409
    later = m.JobSubmitRequest(task=m.TaskEnum.DEMO_ECHO, queue="parked")
    waiting = parsed(g["jobs_create"].sync_detailed(client=client, body=later), 202, m.SubmittedJob)
    assert waiting.position_in_queue is not None
    cancelled = parsed(
        g["jobs_cancel_create"].sync_detailed(client=client, id=waiting.id), 200, m.Job
    )
    assert cancelled.status == m.JobStatusEnum.CANCELLED and cancelled.errors[0].worker is None
    retried = parsed(g["jobs_retry_create"].sync_detailed(client=client, id=waiting.id), 200, m.Job)
    assert retried.status == m.JobStatusEnum.QUEUED
    parsed(g["jobs_destroy"].sync_detailed(client=client, id=waiting.id), 200, m.Job)
    refused = parsed(
        g["jobs_cancel_create"].sync_detailed(client=client, id=waiting.id), 409, m.Error
    )
    assert refused.code == m.ErrorCode.CONFLICT and "was cancelled" in refused.detail

    # list with filters
    listed = g["jobs_list"].sync_detailed(
        client=client, status=m.JobsListStatus.SUCCEEDED, queue="default", task="demo.progress"
    )
    assert [j.id for j in parsed(listed, 200, m.PaginatedJobList).results] == [job.id]
    bad = g["jobs_list"].sync_detailed(client=client, cursor="zzz")
    assert parsed(bad, 400, m.Error).errors.additional_properties.keys() == {"cursor"}

    # tasks, queues, workers, health
    tasks = parsed(g["tasks_list"].sync_detailed(client=client), 200, m.ExposedTask)
    assert "demo.progress" in {t.name for t in tasks}
    queues = parsed(g["queues_list"].sync_detailed(client=client), 200, m.Queue)
    assert "default" in {q.queue for q in queues}
    workers = parsed(g["workers_list"].sync_detailed(client=client), 200, m.Worker)
    assert [w.state for w in workers] == [m.StateEnum.LIVE]
    health = parsed(g["health_retrieve"].sync_detailed(client=client), 200, m.Health)
    assert health.status == m.HealthStatusEnum.OK and health.database.ok
