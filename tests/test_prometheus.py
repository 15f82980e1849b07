"""A real Prometheus scrapes the web app's /metrics and a runworker --metrics-port while jobs run.

Debian's ``prometheus`` package provides the server (.ci/run installs it); without
it the test skips with one line.
"""

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import demo
from jobqueue.models import Job
from tests.api.conftest import free_port, start_gunicorn
from tests.conftest import database_url, wait_until

pytestmark = pytest.mark.slow

TOKEN = "prometheus-test-token"
ECHOES, FAILURES = 40, 3


class Prometheus:
    """A Prometheus server on a free port, scraping every second."""

    def __init__(self, binary: str, targets: dict[str, str], workdir: Path) -> None:
        config = workdir / "prometheus.yml"
        scrape_configs = []
        for name, target in targets.items():
            job: dict = {"job_name": name, "scrape_interval": "1s", "static_configs": []}
            job["static_configs"].append({"targets": [target]})
            if name == "web":
                job["authorization"] = {"type": "Bearer", "credentials": TOKEN}
            scrape_configs.append(job)
        # YAML is a superset of JSON.
        config.write_text(json.dumps({"scrape_configs": scrape_configs}))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, promql: str) -> float | None:
        """The value of an instant query that returns one series, or None before there is one."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                result = json.load(response)["data"]["result"]
        except OSError:
            return None
        return float(result[0]["value"][1]) if result else None

    def eventually(self, promql: str, expected: float, timeout: float = 20) -> None:
        wait_until(lambda: self.query(promql) == expected, timeout, f"{promql} == {expected}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus server (Debian's prometheus package) is not installed")
    return binary


@pytest.fixture
def web(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """gunicorn serving the site (and /metrics, behind TOKEN); yields its host:port."""
    env = {
        "DATABASE_URL": database_url(),
        "JOBQUEUE_METRICS_TOKEN": TOKEN,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "test-only",
    }
    proc, base_url = start_gunicorn(env, tmp_path / "gunicorn.log", threads=2)
    yield base_url.removeprefix("http://")
    proc.terminate()
    proc.wait(timeout=30)


def test_prometheus_sees_the_finished_jobs_and_the_backlog_drain(
    prometheus_binary: str, web: str, start_worker: Callable, tmp_path: Path
) -> None:
    metrics_port = free_port()
    server = Prometheus(
        prometheus_binary, {"web": web, "worker": f"127.0.0.1:{metrics_port}"}, tmp_path
    )
    try:
        for i in range(ECHOES):
            demo.echo.enqueue(i=i)
        for _ in range(FAILURES):
            demo.fail.using(max_attempts=1).enqueue(message="boom")
        # The backlog as the web app reports it, before any worker runs.
        server.eventually('sum(jobqueue_jobs{state="ready"})', ECHOES + FAILURES)

        start_worker(
            "--concurrency", "2", "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"
        )
        wait_until(
            lambda: not Job.objects.exclude(status__in=["succeeded", "failed"]).exists(),
            60,
            "every job finished",
        )
        server.eventually("sum(jobqueue_jobs_finished_total)", ECHOES + FAILURES)
        server.eventually('sum(jobqueue_jobs_finished_total{outcome="failed"})', FAILURES)
        server.eventually(
            'sum(jobqueue_jobs_finished_total{outcome="failed",task="demo.fail"})', FAILURES
        )
        server.eventually('sum(jobqueue_jobs{state="ready"})', 0)
        server.eventually('jobqueue_workers{state="live"}', 1)
        assert server.query("sum(jobqueue_job_duration_seconds_count)") == ECHOES + FAILURES
        assert server.query("sum(jobqueue_job_wait_seconds_count)") == ECHOES + FAILURES
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            exposition = response.read()
        check = subprocess.run(
            [shutil.which("promtool") or "promtool", "check", "metrics"],
            input=exposition,
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        server.stop()


def test_the_metrics_port_serves_liveness(start_worker: Callable, db_proxy: tuple) -> None:
    """/healthz is 200 while the heartbeat holds, 503 once it has failed for 4/5 of the lease."""
    proxy, url = db_proxy
    port = free_port()
    start_worker("--metrics-port", str(port), "--metrics-host", "127.0.0.1", DATABASE_URL=url)

    def status() -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    wait_until(lambda: status() == 200, 20, "the worker reports itself alive")
    proxy.refuse()  # the database goes away: heartbeats fail, reconnects are refused
    wait_until(lambda: status() == 503, 15, "the worker reports its lost heartbeat")
    proxy.restore()
    wait_until(lambda: status() == 200, 20, "the worker is alive again")
