"""The benchmark suite's CI version runs and reports a number for every workload.

`python -m bench --smoke` runs against the server of the test database, in
databases of its own (bench_smoke_*), so that the suite cannot rot unnoticed.
"""

import os
import shutil
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.workloads import WORKLOADS
from tests.conftest import ROOT, database_url


@pytest.mark.django_db
def test_bench_smoke_reports_every_workload() -> None:
    # The API workload drives wrk; without it (a new user's machine) the rest still runs.
    has_wrk = shutil.which("wrk") is not None
    workloads = [w for w in WORKLOADS if has_wrk or w.name != "api"]
    url = urlsplit(database_url())
    server = urlunsplit(url._replace(path="/postgres"))
    # Named after the test database, so that sessions sharing the server keep to their own.
    prefix = f"bench_smoke_{url.path.lstrip('/')}_"
    names = ",".join(w.name for w in workloads)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--prefix",
            prefix,
            "--workloads",
            names,
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_PG_URL": server},
        capture_output=True,
        check=False,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    for workload in workloads:
        label = workload.label(smoke=True)
        if workload.name == "latency":
            label = label.replace("latency", "latency p99 (ms),")
        matching = [r for r in rows if r.startswith(f"| {label}")]
        assert matching, f"no row for {workload.name} in:\n" + "\n".join(rows)
        value = matching[0].split("|")[2].strip()
        assert value[:1].isdigit(), f"{workload.name}: {value!r}"
    memory = [r for r in rows if r.startswith("| memory")]
    assert len(memory) == sum(w.memory for w in workloads)
    for row in memory:
        assert row.split("|")[2].strip()[:1].isdigit(), row
    if not has_wrk:
        pytest.skip("wrk is not installed (apt-get install wrk): the API workload was left out")
