"""docker-compose.yml, the Dockerfile and the systemd unit name entry points that really exist."""

import configparser
import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands, load_command_class
from django.urls import resolve

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def expand(text: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults, as on a machine with no .env."""
    return DEFAULT.sub(lambda m: m[2], text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(expand((ROOT / "docker-compose.yml").read_text()))


def manage_py_calls(command: list[str] | str) -> list[list[str]]:
    """Every ``manage.py <command> <args>`` in a service command, shell wrappers included."""
    text = command if isinstance(command, str) else shlex.join(command)
    if isinstance(command, list) and command[:2] == ["sh", "-c"]:
        text = command[2]
    calls = []
    for part in re.split(r"&&|;|\bdo\b|\bdone\b", text):
        words = shlex.split(part)
        if "manage.py" in words:
            calls.append(words[words.index("manage.py") + 1 :])
    return calls


def assert_command_parses(words: list[str]) -> None:
    name, *args = words
    assert name in get_commands(), f"manage.py {name} does not exist"
    command = load_command_class(get_commands()[name], name)
    command.create_parser("manage.py", name).parse_args(args)  # exits on a bad option


def test_the_four_services_exist(compose) -> None:
    assert set(compose["services"]) == {"db", "web", "worker", "cleanup"}


def test_postgres_keeps_its_data_and_reports_health(compose) -> None:
    db = compose["services"]["db"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert db["volumes"][0].split(":")[0] in compose["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    url = compose["services"]["web"]["environment"]["DATABASE_URL"]
    env = db["environment"]
    assert url == (
        f"postgres://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@db:5432/{env['POSTGRES_DB']}"
    )


def test_web_migrates_then_runs_gunicorn_on_the_real_asgi_module(compose) -> None:
    web = compose["services"]["web"]
    script = web["command"][2]
    assert script.index("manage.py migrate") < script.index("gunicorn project.asgi")
    for call in manage_py_calls(web["command"]):
        assert_command_parses(call)
    assert callable(importlib.import_module("project.asgi").application)
    assert (ROOT / "project" / "gunicorn.conf.py").exists()
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    health_url = " ".join(web["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/\S*?)'", health_url)[1]
    path, _, query = path.partition("?")
    assert resolve(path).url_name == "health"
    assert query == "ready=1"  # readiness: migrations applied


def test_workers_run_runworker_and_can_be_scaled(compose) -> None:
    worker = compose["services"]["worker"]
    (call,) = manage_py_calls(worker["command"])
    assert call[0] == "runworker"
    assert_command_parses(call)
    assert "container_name" not in worker and "ports" not in worker
    assert worker["stop_signal"] == "SIGTERM"
    timeout = float(call[call.index("--shutdown-timeout") + 1])
    assert float(worker["stop_grace_period"].rstrip("s")) > timeout
    assert worker["depends_on"]["web"]["condition"] == "service_healthy"  # after migrations
    port = call[call.index("--metrics-port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(worker["healthcheck"]["test"])


def test_cleanup_runs_purge_jobs_on_a_schedule(compose) -> None:
    cleanup = compose["services"]["cleanup"]
    (call,) = manage_py_calls(cleanup["command"])
    assert call[0] == "purge_jobs"
    assert_command_parses(call)
    assert "while true" in cleanup["command"][2] and "sleep" in cleanup["command"][2]


def test_the_image_and_its_default_command_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "project.asgi"' in dockerfile
    assert "collectstatic" in dockerfile


def test_systemd_web_unit_runs_the_asgi_server_with_room_for_watchers() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "jobqueue-web.service")
    service = unit["Service"]
    assert "gunicorn project.asgi --config project/gunicorn.conf.py" in service["ExecStart"]
    assert int(service["LimitNOFILE"]) >= 65536  # one descriptor per open event stream
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 10  # longer than the graceful_timeout


def test_systemd_unit_signals_only_the_supervisor() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "jobqueue-worker.service")
    service = unit["Service"]
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    words = shlex.split(service["ExecStart"])
    assert_command_parses(words[words.index("manage.py") + 1 :])
    assert float(service["TimeoutStopSec"]) > float(words[words.index("--shutdown-timeout") + 1])


def test_crontab_line_runs_purge_jobs() -> None:
    (line,) = [
        line
        for line in (ROOT / "deploy" / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    fields = line.split(maxsplit=5)
    assert len(fields) == 6 and "manage.py purge_jobs" in fields[5]
    words = shlex.split(fields[5].split("manage.py", 1)[1].split(">>")[0])
    assert_command_parses(words)
