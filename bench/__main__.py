"""``python -m bench [--smoke] [--peers a,b] [--runs N]``: run the suite, print the table."""

import argparse
import os
import shlex
import sys
import time

from bench import database, report, runner
from bench.systems import JOBQUEUE, PEERS
from bench.workloads import WORKLOADS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="jobqueue only, tiny sizes (CI)")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per workload (default 2; smoke 1)"
    )
    parser.add_argument(
        "--peer-runs", type=int, default=None, help="runs for peers (default --runs)"
    )
    parser.add_argument("--peers", default=None, help="comma-separated peers (default: all)")
    parser.add_argument(
        "--workloads", default=None, help="comma-separated workloads (default: all)"
    )
    parser.add_argument("--prefix", default=None, help="database name prefix (starts with 'bench')")
    parser.add_argument("--keep-databases", action="store_true")
    opts = parser.parse_args(argv)

    prefix = opts.prefix or ("bench_smoke_" if opts.smoke else "bench_")
    if opts.smoke:
        peers = []
    elif opts.peers is not None:
        wanted = {p for p in opts.peers.split(",") if p}
        peers = [p for p in PEERS if p.name in wanted]
    else:
        peers = PEERS
    workloads = [w for w in WORKLOADS if not opts.workloads or w.name in opts.workloads.split(",")]
    opts.runs = opts.runs or (1 if opts.smoke else 2)
    peer_runs = opts.peer_runs or opts.runs
    if opts.smoke:  # an idle worker is listening well within a second
        os.environ.setdefault("BENCH_WORKER_WARMUP", "1")

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    all_results = [runner.prepare(s, prefix=prefix, log=log) for s in [JOBQUEUE, *peers]]
    for run in range(max(opts.runs, peer_runs)):
        for res in all_results:
            runs_for = opts.runs if res.system.is_ours else peer_runs
            if res.unavailable or run >= runs_for:
                continue
            for w in workloads:
                if w.ours_only and not res.system.is_ours:
                    continue
                if w.max_runs is not None and run >= w.max_runs:
                    continue
                runner.run_workload(res, w, smoke=opts.smoke, log=log)

    table = report.rows(all_results, smoke=opts.smoke)
    env = report.environment(database.server_version())
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    doc, path = report.write(table, all_results, env, command.strip(), smoke=opts.smoke)
    print(doc)
    log(f"results written to {path} and {path.with_suffix('.md')}")
    if not opts.keep_databases:
        for res in all_results:
            if res.dsn:
                database.drop(res.dsn.rsplit("/", 1)[1], prefix=prefix)

    ours = all_results[0]
    failed = ours.unavailable or any(
        "error" in r for w in workloads for r in ours.runs.get(w.name, [])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
