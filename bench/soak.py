"""``python -m bench.soak``: many jobs, several workers, random faults; then count what went wrong.

On a PostgreSQL cluster of its own (bench/owned_postgres.py, dropped at the
end, so it may restart it), with short leases (3 s), it enqueues ``--jobs``
jobs of the recording task (bench/soak_tasks.py; mostly 5-50 ms, one in
ten 0.5-2 s), starts ``--workers`` ``runworker --concurrency C`` processes,
and for ``--fault-seconds`` injects a random fault every 1-3 s:

- ``kill9-supervisor``: kill -9 of a supervisor; a replacement starts at once;
- ``kill9-child``: kill -9 of a child, preferably one running a job;
- ``sigterm``: a graceful stop; the replacement starts once it has exited;
- ``sigstop``: SIGSTOP of a supervisor for the lease plus 1-3 s, then SIGCONT;
- ``conn-kill``: pg_terminate_backend of every worker connection (found by
  their application_name, which their DATABASE_URL sets);

Kinds are dealt from a shuffled deck, refilled when empty, so that every
kind is injected about as often as the others even in a short window; plus
``--db-restarts`` restarts of the server, evenly spread over the window.
Every fault is logged with its time and target. Then the workers drain the
queue (bounded by ``--drain-seconds``) and the rows are judged
(bench/fault_checks.py): jobs lost (not succeeded), jobs whose runs
overlapped on two processes, jobs completed more than once, wrong results.

A job completed more than once is "in an at-least-once window" when, between
its first run's finish and its next run's start, the fault log shows a fault
that could have kept that finish from being committed: the first run's
supervisor (or one of its children) was killed, terminated or stopped, or
every worker connection was killed, or the server restarted. This is an
approximation from times (the finish and re-claim are the run rows' wall
clock times, the faults' the injector's), not proof that the fault caused it.

Exit status 1 if any job was lost, overlapped or has a wrong result. The
last line is ``SOAK-RESULT {json}`` for scripts (tests/faults/test_soak.py).
"""

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import fault_checks, recording
from bench.fault_workers import LEASE, WORKER_APPLICATION, Worker
from bench.owned_postgres import DATABASE, OwnedPostgres, Unavailable

FAULT_KINDS = ("kill9-supervisor", "kill9-child", "sigterm", "sigstop", "conn-kill")
# Faults that could keep a finished run's outcome from being committed, when they hit everyone.
GLOBAL_FAULTS = {"conn-kill", "db-restart"}
RESULT_PREFIX = "SOAK-RESULT "
ASYNC_SLOTS = 20  # per child, with --execution async
SHUTDOWN_WAIT = 40.0  # a SIGTERMed worker exits within its jobs' run time; bound it anyway


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # time.time(), comparable with the run rows' wall-clock times
    kind: str
    supervisor: int | None  # the supervisor it hit (or whose child), None if it hit everyone
    detail: str


def job_durations(n: int, rng: random.Random) -> list[tuple[int, float]]:
    """``(key, seconds)``: mostly short jobs, one in ten long enough to be caught mid-run,
    and one in two hundred longer than the lease, so that a supervisor stopped past the
    lease finds its child still running one unless the child stops itself (self-fencing)."""

    def seconds() -> float:
        draw = rng.random()
        if draw < 0.005:
            return rng.uniform(LEASE + 1, LEASE + 3)
        if draw < 0.1:
            return rng.uniform(0.5, 2.0)
        return rng.uniform(0.005, 0.05)

    return [(key, seconds()) for key in range(n)]


class Soak:
    """The workers, the fault injector and its log, on one owned server."""

    def __init__(self, pg: OwnedPostgres, opts: argparse.Namespace, log_dir: Path) -> None:
        self.pg = pg
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.log_dir = log_dir
        self.workers: list[Worker] = []
        self.retired: list[Worker] = []  # killed or terminated; closed at the end
        self.terminating: list[tuple[Worker, float]] = []  # SIGTERMed, and when
        self.stopped: list[tuple[Worker, float]] = []  # SIGSTOPped, and when to continue
        self.faults: list[Fault] = []
        self.deck: list[str] = []
        self.started = time.monotonic()

    # ------------------------------------------------------------ workers
    def start_worker(self) -> Worker:
        n = len(self.workers) + len(self.retired)
        worker = Worker(
            self.pg.url_for(DATABASE, application_name=WORKER_APPLICATION),
            record_url=self.pg.url_for(DATABASE, application_name="soak-recorder"),
            log=self.log_dir / f"worker-{n}.log",
            concurrency=self.opts.concurrency,
            args=("--async-slots", str(ASYNC_SLOTS)) if self.opts.execution == "async" else (),
        )
        self.workers.append(worker)
        return worker

    def healthy(self) -> list[Worker]:
        busy = {w.pid for w, _ in self.terminating} | {w.pid for w, _ in self.stopped}
        return [w for w in self.workers if w.alive() and w.pid not in busy]

    def retire(self, worker: Worker) -> None:
        self.workers.remove(worker)
        self.retired.append(worker)

    def log(self, kind: str, supervisor: int | None, detail: str) -> None:
        self.faults.append(Fault(time.time(), kind, supervisor, detail))
        self.say(f"{kind:<17} {detail}")

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {message}", flush=True)

    # ------------------------------------------------------------ faults
    def inject(self, kind: str) -> None:
        healthy = self.healthy()
        if kind in {"kill9-supervisor", "sigterm", "sigstop"} and len(healthy) < 2:
            kind = "kill9-child"  # keep one supervisor undisturbed, so the queue moves
        if not healthy:
            return
        target = self.rng.choice(healthy)
        if kind == "kill9-supervisor":
            target.kill()
            self.retire(target)
            new = self.start_worker()
            self.log(kind, target.pid, f"supervisor {target.pid}; replacement {new.pid}")
        elif kind == "sigterm":
            target.terminate()
            self.terminating.append((target, time.monotonic()))
            self.log(kind, target.pid, f"supervisor {target.pid}")
        elif kind == "sigstop":
            seconds = LEASE + self.rng.uniform(1, 3)
            target.sigstop()
            self.stopped.append((target, time.monotonic() + seconds))
            self.log(kind, target.pid, f"supervisor {target.pid} for {seconds:.1f} s")
        elif kind == "kill9-child":
            self.kill_child(target)
        else:
            self.kill_connections()

    def deal(self) -> str:
        if not self.deck:
            self.deck = list(FAULT_KINDS)
            self.rng.shuffle(self.deck)
        return self.deck.pop()

    def kill_child(self, worker: Worker) -> None:
        children = {c.pid for c in worker.children()}
        if not children:
            return
        with self.control() as conn:
            running = {
                pid: job for job, pid, sup in fault_checks.running(conn) if sup == worker.pid
            }
        busy = sorted(set(running) & children)
        pid = self.rng.choice(busy or sorted(children))
        if worker.kill_child(pid):
            job = f"running job {running[pid]}" if pid in running else "idle"
            self.log("kill9-child", worker.pid, f"child {pid} of {worker.pid}, {job}")

    def kill_connections(self) -> None:
        with self.control() as conn:
            killed = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                [WORKER_APPLICATION],
            ).fetchone()
        self.log("conn-kill", None, f"{killed[0] if killed else 0} worker connections")

    def control(self) -> psycopg.Connection:
        return self.pg.connect(application_name="soak-control")

    def tend(self) -> None:
        """Continue stopped supervisors when due; replace terminated ones once they exited."""
        now = time.monotonic()
        for worker, until in list(self.stopped):
            if now >= until:
                worker.sigcont()
                self.stopped.remove((worker, until))
                self.say(f"{'sigcont':<17} supervisor {worker.pid}")
        for worker, since in list(self.terminating):
            if worker.alive() and now - since < SHUTDOWN_WAIT:
                continue
            if worker.alive():
                worker.kill()
                self.say(
                    f"supervisor {worker.pid} ignored SIGTERM for {SHUTDOWN_WAIT:.0f} s: killed"
                )
            self.terminating.remove((worker, since))
            self.retire(worker)
            new = self.start_worker()
            self.say(
                f"{'replacement':<17} {new.pid} for {worker.pid} (exit {worker.proc.returncode})"
            )
        for worker in [w for w in self.workers if not w.alive() and w not in
                       {t for t, _ in self.terminating}]:  # fmt: skip
            self.retire(worker)
            new = self.start_worker()
            self.say(f"supervisor {worker.pid} exited by itself ({worker.proc.returncode}); "
                     f"replacement {new.pid}")  # fmt: skip

    def run_faults(self) -> None:
        window = self.opts.fault_seconds
        begin = time.monotonic()
        restarts = [begin + window * (i + 1) / (self.opts.db_restarts + 1)
                    for i in range(self.opts.db_restarts)]  # fmt: skip
        next_fault = begin + self.rng.uniform(1, 3)
        while (now := time.monotonic()) < begin + window:
            self.tend()
            if restarts and now >= restarts[0]:
                restarts.pop(0)
                took = time.monotonic()
                self.pg.restart()
                self.log("db-restart", None, f"server restarted in {time.monotonic() - took:.1f} s")
            elif now >= next_fault:
                self.inject(self.deal())
                next_fault = time.monotonic() + self.rng.uniform(1, 3)
            time.sleep(0.05)
        for worker, until in list(self.stopped):
            worker.sigcont()
            self.stopped.remove((worker, until))
            self.say(f"{'sigcont':<17} supervisor {worker.pid} (end of the fault window)")

    def drain(self, ids: list[int]) -> bool:
        deadline = time.monotonic() + self.opts.drain_seconds
        last_said = 0.0
        while time.monotonic() < deadline:
            self.tend()
            try:
                with self.control() as conn:
                    left = fault_checks.unfinished(conn, ids)
            except psycopg.OperationalError:
                left = -1
            if left == 0:
                return True
            if time.monotonic() - last_said > 10:
                self.say(f"draining: {left} jobs not final yet")
                last_said = time.monotonic()
            time.sleep(0.5)
        return False

    def close(self) -> None:
        for worker, _ in self.stopped:
            worker.sigcont()
        for worker in self.workers + self.retired:
            worker.close(timeout=10)


def in_window(repeat: fault_checks.Repeat, faults: list[Fault]) -> bool:
    """Whether a fault that could have lost the first finish's commit came before the re-run."""
    start, end = repeat.first_finished.timestamp(), repeat.next_started.timestamp()
    return any(
        start <= f.at <= end
        and (f.kind in GLOBAL_FAULTS or f.supervisor == repeat.first_supervisor)
        for f in faults
    )


def summarise(findings: fault_checks.Findings, faults: list[Fault], drained: bool) -> dict:
    kinds = Counter(f.kind for f in faults)
    return {
        "jobs": findings.jobs,
        "by_status": findings.by_status,
        "drained": drained,
        "runs": findings.runs,
        "lost": len(findings.lost),
        "overlapped": len(findings.overlapped),
        "longest_overlap_seconds": round(findings.overlap_seconds, 3),
        "completed_more_than_once": len(findings.repeated),
        "in_at_least_once_window": sum(in_window(r, faults) for r in findings.repeated),
        "wrong": len(findings.wrong),
        "faults": {kind: kinds.get(kind, 0) for kind in (*FAULT_KINDS, "db-restart")},
        "examples": {
            "lost": findings.lost[:10],
            "overlapped": findings.overlapped[:10],
            "completed_more_than_once": [r.job_id for r in findings.repeated[:10]],
            "wrong": findings.wrong[:10],
        },
    }


def print_table(result: dict) -> None:
    rows = [
        ("jobs", result["jobs"]),
        ("by status", ", ".join(f"{k} {v}" for k, v in sorted(result["by_status"].items()))),
        ("drained in time", "yes" if result["drained"] else "NO"),
        ("runs recorded", result["runs"]),
        ("jobs lost (not succeeded)", result["lost"]),
        ("jobs whose runs overlapped", f"{result['overlapped']} "
         f"(longest {result['longest_overlap_seconds']} s)"),
        ("jobs completed more than once", result["completed_more_than_once"]),
        ("  of which in an at-least-once window", result["in_at_least_once_window"]),
        ("wrong results", result["wrong"]),
    ]  # fmt: skip
    rows += [(f"faults: {kind}", n) for kind, n in result["faults"].items()]
    width = max(len(name) for name, _ in rows)
    print(f"\n| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    for what, ids in result["examples"].items():
        if ids:
            print(f"{what}, first ids: {ids}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--fault-seconds", type=float, default=90)
    parser.add_argument("--db-restarts", type=int, default=2)
    parser.add_argument("--drain-seconds", type=float, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument(
        "--execution",
        choices=list(recording.TASKS),
        default="process",
        help=f"the jobs' mode (async: {ASYNC_SLOTS} async slots per child)",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="worker logs (default: a temp dir)"
    )
    opts = parser.parse_args(argv)
    if opts.seed is None:
        opts.seed = random.randrange(1 << 31)
    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {opts.jobs} {opts.execution}-mode jobs, "
          f"{opts.workers} workers x {opts.concurrency}, "
          f"{opts.fault_seconds:g} s of faults, {opts.db_restarts} db restarts, "
          f"seed {opts.seed}, worker logs in {log_dir}", flush=True)  # fmt: skip

    try:
        pg = OwnedPostgres.create()
    except Unavailable as e:
        print(f"soak: no PostgreSQL of its own to restart: {e}", file=sys.stderr)
        return 2
    try:
        with pg.connect() as conn:
            recording.create_table(conn)
        durations = job_durations(opts.jobs, random.Random(opts.seed))
        ids = recording.enqueue(pg.url, durations, opts.execution)
        soak = Soak(pg, opts, log_dir)
        soak.say(f"enqueued {len(ids)} jobs on {pg.url}")
        try:
            for _ in range(opts.workers):
                soak.start_worker()
            soak.run_faults()
            soak.say("fault window over; draining")
            drained = soak.drain(ids)
        finally:
            soak.close()
        with pg.connect() as conn:
            findings = fault_checks.examine(conn, ids)
    finally:
        pg.drop()
    result = summarise(findings, soak.faults, drained)
    print_table(result)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 1 if result["lost"] or result["overlapped"] or result["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
