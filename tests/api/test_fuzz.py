"""schemathesis's command line, every check and every phase, against the real API (gunicorn).

It runs what a user would: ``schemathesis run <server>/api/schema/ --checks all`` with the
examples, coverage, fuzzing and stateful phases (the stateful one follows the links
schemathesis infers: a submitted job is then read, cancelled, retried, listed). Twice: as a
user who owns a job in every state, with the fixed seed 424242 (the same cases on every run,
so that a failure reproduces), and as staff holding every job permission, with a random seed
(new cases each run; the output prints it, to replay) and without the coverage phase, whose
cases the seeded run already made. Job ids in paths come mostly from those
jobs, so that ``/jobs/{id}/...`` answers with real bodies in every state.

Any failure fails the test. The deliberate exceptions, each with its reason, are
``DELIBERATE_EXCEPTIONS`` below; nothing else is spared.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import jobs_in_every_state
from tests.conftest import ROOT

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = 10  # per operation and phase
# The events stream of an unfinished job sends the job as its first event and then waits for a
# change, which nothing makes while schemathesis waits (it sends one request at a time): it
# would read on until its request timeout, 10 s a stream, most of a run's time. The first event
# is all such a stream holds by then, and a finished job's stream is one event and its end, so
# reading one event checks the same bytes.
STREAM_EVENTS = 1
# Statuses the positive_data_acceptance check accepts by default, and 400 where it is meant.
ACCEPTED = ["2XX", "3XX", "401", "403", "404", "409", "429"]

DELIBERATE_EXCEPTIONS = {
    # (check, "METHOD /path" or None for every operation): reason
    ("positive_data_acceptance", "POST /api/jobs/"): (
        "400 for schema-valid bodies that break a rule across fields, which OpenAPI 3.0 cannot "
        "state and the operation's description does: arguments that fit the task's "
        "parameters, scheduled_at or delay_seconds but not both, and a body idempotency_key "
        "equal to the Idempotency-Key header."
    ),
    ("positive_data_acceptance", "GET /api/jobs/"): (
        "400 for a cursor the API did not give: a cursor is opaque, any string is schema-valid."
    ),
    ("use_after_free", None): (
        "DELETE /api/jobs/{id}/ cancels and never deletes (the product contract), so the job "
        "is still there after it."
    ),
}


def config_file(path: Path, job_ids: list[int]) -> Path:
    """schemathesis.toml: job ids to draw paths from, and the exceptions per operation."""
    lines = [
        "[dictionaries]",
        f"jobs = {{ values = {job_ids} }}",
        "[parameters]",
        '"path.id" = { dictionary = "jobs", probability = 0.8 }',
        "[[operations]]",
        'include-path = "/api/jobs/{id}/events/"',
        'include-method = "GET"',
        f"max-stream-events = {STREAM_EVENTS}",
    ]
    for (check, operation), _reason in DELIBERATE_EXCEPTIONS.items():
        if operation is None:
            continue
        method, route = operation.split()
        lines += [
            "[[operations]]",
            f'include-path = "{route}"',
            f'include-method = "{method}"',
            f"checks.{check}.expected-statuses = {[*ACCEPTED, '400']}".replace("'", '"'),
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_schemathesis(base_url: str, token: str, seed: str, config: Path) -> tuple[int, str]:
    everywhere = [check for (check, operation) in DELIBERATE_EXCEPTIONS if operation is None]
    command = [
        str(SCHEMATHESIS),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{base_url}/api/schema/",
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(everywhere),
        "--max-examples",
        str(EXAMPLES),
        "--header",
        f"Authorization: Token {token}",
        # The coverage phase derives its cases from the schema, not from the seed: the seeded
        # run has them all, so the random one spends its time on new cases instead.
        *(["--phases", "examples,fuzzing,stateful"] if seed == "random" else ["--seed", seed]),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
    }
    done = subprocess.run(
        command,
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed")
@pytest.mark.parametrize(("caller", "seed"), [("owner", "424242"), ("staff", "random")])
def test_schemathesis_finds_nothing(api, make_user, tmp_path, caller, seed):
    owner, owner_token = make_user("owner")
    perms = ("view_job", "cancel_job", "retry_job", "purge_jobs")
    _, staff_token = make_user("staff", staff=True, perms=perms)
    config = config_file(tmp_path / "schemathesis.toml", jobs_in_every_state(owner))
    token = staff_token if caller == "staff" else owner_token

    code, output = run_schemathesis(api.base_url, token, seed, config)

    assert code == 0, output  # no failure, no error (a warning, such as 403s, is no failure)
    assert "Stateful (in" in output and "Scenarios:" in output, output  # the stateful phase ran
