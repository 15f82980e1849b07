"""deploy/prometheus (alert rules) and deploy/grafana (dashboard) name only metrics that exist."""

import json
import re
import shutil
import subprocess

import pytest
from django.test import Client
from prometheus_client import REGISTRY, generate_latest

import jobqueue.worker.telemetry  # noqa: F401  (registers the worker's metrics)
from tests.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus" / "jobqueue-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "jobqueue-dashboard.json"
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum")}


def exposed_names(text: str) -> set[str]:
    """Every series name an exposition can have, from its # TYPE lines."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))  # counters: *_total
    return names


@pytest.fixture
def known(db: None, client: Client, settings) -> set[str]:
    settings.DEBUG = True
    web = client.get("/metrics").content.decode()
    return exposed_names(web) | exposed_names(generate_latest(REGISTRY).decode())


def test_alert_rules_pass_promtool_and_use_known_metrics(known: set[str]) -> None:
    used = set(re.findall(r"\bjobqueue_[a-z_]+", RULES.read_text()))
    assert used and used <= known, used - known
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout


def test_the_dashboard_uses_known_metrics(known: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bjobqueue_[a-z_]+", expr)}
    assert used and used <= known, used - known


# promtool's rule unit test: a queue whose oldest ready job ages past 5 minutes pages after
# 5 more; the same backlog on a paused queue never does.
BACKLOG_STALE_TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'jobqueue_oldest_ready_age_seconds{{queue="mail",instance="web1"}}'
        values: '0+60x20'
      - series: 'jobqueue_queue_paused{{queue="mail",instance="web1"}}'
        values: '0x20'
      - series: 'jobqueue_oldest_ready_age_seconds{{queue="reports",instance="web1"}}'
        values: '0+60x20'
      - series: 'jobqueue_queue_paused{{queue="reports",instance="web1"}}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 12m
        alertname: JobqueueBacklogStale
        exp_alerts:
          - exp_labels: {{severity: page, queue: mail}}
            exp_annotations:
              summary: "Queue mail: the oldest ready job has waited 12m 0s"
"""


def test_a_stale_backlog_pages_unless_its_queue_is_paused(tmp_path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    test = tmp_path / "backlog_stale_test.yml"
    test.write_text(BACKLOG_STALE_TEST.format(rules=json.dumps(str(RULES))))
    run = subprocess.run(
        [promtool, "test", "rules", str(test)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
