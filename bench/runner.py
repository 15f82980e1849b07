"""Run every workload for every system, several times, each driver in its own interpreter.

Runs are interleaved (run 1 of every system, then run 2 ...) so that a burst
of load from elsewhere on the machine spreads over all systems rather than
landing on one. A system that cannot be installed or set up is reported as
"n/a" with the reason instead of stopping the suite.
"""

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from bench import database, venvs
from bench.systems import DRIVERS, ROOT, System
from bench.workloads import Workload

RESULT_PREFIX = "BENCH-RESULT "


@dataclass(slots=True)
class SystemResults:
    system: System
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # workload -> one per run
    unavailable: str | None = None  # why the system could not run at all
    versions: dict[str, str] = field(default_factory=dict)
    dsn: str = ""


def prepare(system: System, *, prefix: str, log: Any) -> SystemResults:
    """Install the system, give it a fresh database and its schema."""
    results = SystemResults(system)
    try:
        log(f"[{system.name}] installing")
        venvs.ensure(system)
        results.versions = venvs.versions(system)
        results.dsn = database.recreate(prefix + system.database.removeprefix("bench_"),
                                        prefix=prefix)  # fmt: skip
        setup = call_driver(system, "setup", results.dsn, {}, timeout=300)
        if "error" in setup:
            raise RuntimeError(f"setup: {setup['error']}")
        results.versions.update(setup.get("versions", {}))
    except Exception as e:
        results.unavailable = str(e)[:200] or type(e).__name__
        log(f"[{system.name}] n/a: {results.unavailable}")
    return results


def run_workload(results: SystemResults, workload: Workload, *, smoke: bool, log: Any) -> None:
    args = workload.sizes(smoke=smoke, peer=not results.system.is_ours)
    started = time.monotonic()
    outcome = call_driver(results.system, workload.name, results.dsn, args, workload.timeout)
    outcome["wall_seconds"] = round(time.monotonic() - started, 1)
    results.runs.setdefault(workload.name, []).append(outcome)
    shown = outcome.get("error") or _short(outcome)
    log(f"[{results.system.name}] {workload.name}: {shown} ({outcome['wall_seconds']} s)")


def call_driver(
    system: System, workload: str, dsn: str, args: dict[str, int], timeout: float
) -> dict[str, Any]:
    """Run one driver invocation; its BENCH-RESULT line, or {"error": ...}."""
    cmd = [str(system.python), str(DRIVERS / system.driver), workload, "--dsn", dsn]
    for key, value in args.items():
        cmd += [f"--{key.replace('_', '-')}" if len(key) > 1 else f"-{key}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(DRIVERS), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the drivers choose their own settings
    env.pop("VIRTUAL_ENV", None)
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, check=False, text=True, timeout=timeout,
            start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return {"error": f"no result (exit {proc.returncode}): {tail[0][:200]}"}


def _short(outcome: dict[str, Any]) -> str:
    if "value" in outcome:
        return f"{outcome['value']:,.2f} {outcome.get('unit', '')}"
    if "p50" in outcome:
        return " ".join(f"{p} {outcome[p]:.1f}" for p in ("p50", "p95", "p99") if p in outcome)
    return json.dumps(outcome)[:120]
