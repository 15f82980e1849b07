"""A small soak (python -m bench.soak) as a test: random faults on real workers, then the rows."""

import json
import subprocess
import sys

import pytest

from bench.owned_postgres import ROOT
from bench.soak import RESULT_PREFIX

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SMALL = {
    "process": ["--jobs", "2000", "--fault-seconds", "30", "--db-restarts", "1", "--seed", "7"],
    # Async-mode jobs, many at once in each child: a kill takes several down together.
    "async": [
        "--execution", "async", "--jobs", "1500", "--fault-seconds", "30", "--db-restarts", "1",
        "--seed", "11",
    ],
}  # fmt: skip


@pytest.fixture(scope="module", params=list(SMALL))
def soak(owned_pg, request) -> dict:
    """Run the soak once per mode; it makes a cluster of its own (``owned_pg``: skip if none
    can be)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", *SMALL[request.param]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    print(proc.stdout[-6000:])
    results = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert results, f"no result line (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(results[-1][len(RESULT_PREFIX) :])


def test_soak_loses_no_job_and_stores_no_wrong_result(soak: dict) -> None:
    assert soak["drained"]
    assert soak["lost"] == 0
    assert soak["wrong"] == 0
    assert sum(soak["faults"].values()) >= 10, "too few faults to mean anything"


def test_soak_runs_no_job_twice_at_once(soak: dict) -> None:
    assert soak["overlapped"] == 0
