"""Medians of the runs, the side-by-side table, and the files in bench/results/.

Every cell is the median over the runs that succeeded; a system that never
ran a workload shows "n/a: why". The ratio column after each peer is
jobqueue / peer: above 1 means jobqueue is faster for throughputs; below 1
means it is quicker or smaller for latencies, memory and sizes.
"""

import json
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.runner import SystemResults
from bench.workloads import WORKLOADS

RESULTS = Path(__file__).resolve().parent / "results"


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if "error" not in r and isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def rows(all_results: list[SystemResults], *, smoke: bool) -> list[dict[str, Any]]:
    """One row per workload (latency as p50/p95/p99, plus memory), cells per system."""
    table = []
    for w in WORKLOADS:
        if w.name == "latency":
            for p in ("p50", "p95", "p99"):
                label = w.label(smoke=smoke).replace("latency", f"latency {p} (ms),")
                table.append(_row(label, w.name, p,
                                  all_results, w.ours_only, lower=True, fmt="{:.1f}"))  # fmt: skip
        else:
            fmt = "{:,.0f}" if w.unit == "jobs/s" else "{:.2f}"
            table.append(_row(f"{w.label(smoke=smoke)} ({w.unit})", w.name, "value", all_results,
                              w.ours_only, lower=not w.higher_is_better, fmt=fmt))  # fmt: skip
        for key, what, also_fmt in w.also:
            table.append(_row(f"{w.name}: {what}", w.name, key, all_results, w.ours_only,
                              lower=False, fmt=also_fmt))  # fmt: skip
    for w in WORKLOADS:
        if w.memory:
            table.append(_row(f"memory: peak RSS of the worker processes, {w.label(smoke=smoke)} "
                              "(MB)", w.name, "rss_total_mb", all_results, w.ours_only,
                              lower=True, fmt="{:.0f}"))  # fmt: skip
    return table


def _row(label: str, workload: str, key: str, all_results: list[SystemResults],
         ours_only: bool, *, lower: bool, fmt: str) -> dict[str, Any]:  # fmt: skip
    cells: dict[str, dict[str, Any]] = {}
    for res in all_results:
        name = res.system.name
        if ours_only and not res.system.is_ours:
            cells[name] = {"text": "-"}
            continue
        if res.unavailable:
            cells[name] = {"text": f"n/a: {res.unavailable}"}
            continue
        runs = res.runs.get(workload, [])
        value = median_of(runs, key)
        if value is None:
            errors = [r["error"] for r in runs if "error" in r]
            cells[name] = {"text": f"n/a: {errors[0] if errors else 'not run'}"}
            continue
        text = fmt.format(value)
        ok = sum(1 for r in runs if "error" not in r)
        if ok < len(runs):
            text += f" ({ok}/{len(runs)} runs)"
        cells[name] = {"value": value, "text": text, "runs": ok}
    if workload == "api" and "value" in cells.get(all_results[0].system.name, {}):
        runs = all_results[0].runs.get("api", [])
        p50, p99 = median_of(runs, "p50"), median_of(runs, "p99")
        cells[all_results[0].system.name]["text"] += f" (p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
    if workload == "latency" and "value" in cells.get(all_results[0].system.name, {}):
        runs = [r for r in all_results[0].runs.get("latency", []) if "after_commit" in r]
        if runs:
            share = statistics.median(r["after_commit"][key] for r in runs)
            cells[all_results[0].system.name]["text"] += f" (after commit: {share:.1f})"
    if workload == "bloat" and "value" in cells.get(all_results[0].system.name, {}):
        run = next(r for r in all_results[0].runs["bloat"] if "error" not in r)
        if "growth_pct" in run:
            cells[all_results[0].system.name]["text"] += (
                f" (after cycle 1: {run['after_first_cycle_mb']:.2f}, cycle 2: "
                f"{run['after_second_cycle_mb']:.2f}; growth from cycle 2 to "
                f"{run['cycles']}: {run['growth_pct']:+.1f}%)"
            )
    if key == "rss_total_mb":
        ours = next((r for r in all_results if r.system.is_ours), None)
        if ours and "value" in cells.get(ours.system.name, {}):
            ok = [r for r in ours.runs.get(workload, []) if "error" not in r]
            sup = statistics.median(r["rss_main_mb"][0] for r in ok if r.get("rss_main_mb"))
            kids = [
                statistics.median(vals)
                for vals in zip(*(r["rss_children_mb"] for r in ok), strict=False)
            ]
            cells[ours.system.name]["text"] += (
                f" (supervisor {sup:.0f} + children {' + '.join(f'{k:.0f}' for k in kids)})"
            )
    return {"label": label, "workload": workload, "key": key, "lower": lower, "cells": cells}


def ratio_text(ours: dict[str, Any], peer: dict[str, Any]) -> str:
    if "value" not in ours or "value" not in peer or not peer["value"]:
        return ""
    return f"{ours['value'] / peer['value']:.2f}x"


def markdown(table: list[dict[str, Any]], all_results: list[SystemResults]) -> str:
    ours, peers = all_results[0], all_results[1:]
    head = ["workload", ours.system.name]
    for p in peers:
        head += [p.system.name, f"{ours.system.name}/{p.system.name}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = row["cells"]
        ours_cell = cells[ours.system.name]
        line = [row["label"], ours_cell["text"]]
        for p in peers:
            cell = cells[p.system.name]
            line += [cell["text"], ratio_text(ours_cell, cell)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in line) + " |")
    return "\n".join(lines)


def environment(pg_version: str) -> dict[str, Any]:
    import os

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {platform.machine()}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
    }


def write(
    table: list[dict[str, Any]],
    all_results: list[SystemResults],
    env: dict[str, Any],
    command: str,
    *,
    smoke: bool,
) -> tuple[str, Path]:
    """The markdown document (also printed) and the JSON with every run, in bench/results/."""
    versions = "; ".join(
        f"{r.system.name} " + ", ".join(f"{k} {v}" for k, v in r.versions.items())
        for r in all_results
    )
    setup = "\n".join(f"- **{r.system.name}**: {r.system.config}" for r in all_results)
    runs = max((len(v) for r in all_results for v in r.runs.values()), default=0)
    doc = (
        f"{markdown(table, all_results)}\n\n"
        f"Medians of {runs} runs. Ratio = jobqueue / peer: above 1 is better for jobqueue on "
        "throughputs and the depth ratio, below 1 on latencies, memory and sizes.\n\n"
        f"- date: {env['date']}\n- machine: {env['machine']}, {env['os']}\n"
        f"- PostgreSQL {env['postgresql']}, Python {env['python']}\n"
        f"- versions: {versions}\n- command: `{command}`\n\n"
        f"How each system was run:\n{setup}\n"
    )
    RESULTS.mkdir(exist_ok=True)
    stem = "smoke" if smoke else "latest"
    (RESULTS / f"{stem}.md").write_text(doc)
    payload = {
        "environment": env,
        "command": command,
        "table": [
            {"label": r["label"], "cells": {k: v.get("text") for k, v in r["cells"].items()}}
            for r in table
        ],
        "systems": {
            r.system.name: {
                "unavailable": r.unavailable,
                "versions": r.versions,
                "config": r.system.config,
                "runs": r.runs,
            }
            for r in all_results
        },
    }
    path = RESULTS / f"{stem}.json"
    path.write_text(json.dumps(payload, indent=1, default=str))
    return doc, path
