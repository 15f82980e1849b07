"""The workloads: what each measures, its sizes, and which way is better.

Sizes are the issue's; ``--smoke`` shrinks them so that CI runs the same code
in seconds. ``ours_only`` workloads are jobqueue's own properties (claim
speed against table depth, table bloat) that the issue asks of us only.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    name: str  # the driver's workload argument
    title: str  # the row label in the table, formatted with the sizes
    unit: str
    higher_is_better: bool
    args: dict[str, int]  # the driver's size arguments (full run)
    smoke_args: dict[str, int]
    ours_only: bool = False
    # Full-run sizes for peers where they differ: slow peers would not fit the time budget.
    peer_args: dict[str, int] | None = None
    max_runs: int | None = None  # fewer runs where a result does not vary (sizes)
    timeout: float = 900.0  # seconds before the harness gives up on one run
    memory: bool = False  # the report adds a row for the workers' peak RSS in this workload
    # More rows for figures the driver reports beside its value: (key, what it is, format).
    also: tuple[tuple[str, str, str], ...] = ()

    def sizes(self, *, smoke: bool, peer: bool) -> dict[str, int]:
        if smoke:
            return self.smoke_args
        return self.peer_args if peer and self.peer_args else self.args

    def label(self, *, smoke: bool) -> str:
        label = self.title.format(**self.sizes(smoke=smoke, peer=False))
        if not smoke and self.peer_args and self.peer_args != self.args:
            label += " (peers: " + self.title.format(**self.peer_args).split(" ", 1)[1] + ")"
        return label


IO_SIZES = {"n": 2_000, "wait_ms": 100, "processes": 2, "slots": 500, "threads": 100}
IO_SMOKE_SIZES = {"n": 200, "wait_ms": 20, "processes": 2, "slots": 100, "threads": 20}

WORKLOADS = [
    Workload(
        name="bulk",
        title="bulk enqueue {n:,}",
        unit="jobs/s",
        higher_is_better=True,
        args={"n": 20_000},
        smoke_args={"n": 500},
        timeout=300,
    ),
    Workload(
        name="single",
        title="single enqueue {n:,}, one transaction each",
        unit="jobs/s",
        higher_is_better=True,
        args={"n": 2_000},
        smoke_args={"n": 100},
        timeout=300,
    ),
    Workload(
        name="drain",
        title="drain {n:,} queued, concurrency {concurrency}",
        unit="jobs/s",
        higher_is_better=True,
        args={"n": 20_000, "concurrency": 2},
        smoke_args={"n": 500, "concurrency": 2},
        peer_args={"n": 5_000, "concurrency": 2},
        memory=True,
    ),
    Workload(
        name="latency",
        title="latency enqueue to start, {n} jobs 50 ms apart",
        unit="ms",
        higher_is_better=False,
        args={"n": 200, "concurrency": 2},
        smoke_args={"n": 20, "concurrency": 2},
        timeout=120,
    ),
    Workload(
        name="depth",
        title="depth: drain rate with {queued:,} queued / with {n:,} queued",
        unit="ratio",
        higher_is_better=True,
        args={"n": 10_000, "queued": 1_000_000, "concurrency": 2},
        smoke_args={"n": 200, "queued": 5_000, "concurrency": 2},
        ours_only=True,
    ),
    Workload(
        name="bloat",
        title="bloat: table + indexes after {n:,} jobs run in cycles, each purged and vacuumed",
        unit="MB",
        higher_is_better=False,
        args={"n": 1_000_000},
        smoke_args={"n": 2_000},
        ours_only=True,
        max_runs=1,
    ),
    # W5: jobs that wait on something else (HTTP, SMTP, S3), at each system's documented
    # setting for such work, with two worker processes. Each driver takes from the sizes
    # what its mode uses: ``slots`` async jobs or ``threads`` threads per process. The rate
    # runs from the first job's start to the last finish, as the rows record them: the drain
    # lasts about a second, so the workers' start-up would set it otherwise (the rate from
    # the workers' start is in bench/results/*.json as ``from_worker_start``).
    Workload(
        name="io",
        title="I/O-bound: {n:,} jobs waiting {wait_ms} ms, {processes} worker processes "
        "(jobqueue: async, {slots} slots each)",
        unit="jobs/s",
        higher_is_better=True,
        args=IO_SIZES,
        smoke_args=IO_SMOKE_SIZES,
        timeout=300,
        memory=True,
    ),
    Workload(
        name="io_threads",
        title="I/O-bound, thread mode: {n:,} jobs waiting {wait_ms} ms, {processes} children "
        "x {threads} threads",
        unit="jobs/s",
        higher_is_better=True,
        args=IO_SIZES,
        smoke_args=IO_SMOKE_SIZES,
        ours_only=True,
        timeout=300,
        memory=True,
    ),
]

# Global limits (issue 12): the rate a limited queue reaches against its limit. Two worker
# processes of two children each, so that only the limit holds the queue back.
LIMIT_WORKERS = {"processes": 2, "concurrency": 2}
WORKLOADS += [
    Workload(
        name="limit_concurrency",
        title="limited queue, concurrency {limit}: {n} jobs of {wait_ms} ms, {processes} workers "
        "x {concurrency} children (jobs/s; ceiling limit / wait)",
        unit="jobs/s",
        higher_is_better=True,
        args={"n": 400, "wait_ms": 50, "limit": 2, **LIMIT_WORKERS},
        smoke_args={"n": 40, "wait_ms": 20, "limit": 2, **LIMIT_WORKERS},
        ours_only=True,
        timeout=300,
        also=(
            ("of_ceiling", "achieved / ceiling", "{:.2f}"),
            ("most_running_at_once", "most running at once, from the rows", "{:.0f}"),
        ),
    ),
    Workload(
        name="limit_rate",
        title="limited queue, rate {limit}/s: {n:,} no-op jobs, {processes} workers "
        "x {concurrency} children (starts/s)",
        unit="jobs/s",
        higher_is_better=True,
        args={"n": 10_000, "limit": 1000, **LIMIT_WORKERS},
        smoke_args={"n": 300, "limit": 100, **LIMIT_WORKERS},
        ours_only=True,
        timeout=300,
        also=(
            ("of_ceiling", "achieved / limit", "{:.2f}"),
            ("busiest_second_starts", "most starts in one 1-second window", "{:.0f}"),
        ),
    ),
]

# The API engineer's load test, when it is there: GET /api/jobs/{id}/ under gunicorn with wrk.
if (Path(__file__).resolve().parent / "api_load.py").exists():
    WORKLOADS.append(
        Workload(
            name="api",
            title="API GET /api/jobs/{{id}}/, gunicorn, wrk {seconds} s",
            unit="req/s",
            higher_is_better=True,
            args={"seconds": 10},
            smoke_args={"seconds": 2},
            ours_only=True,
            timeout=300,
        )
    )

BY_NAME = {w.name: w for w in WORKLOADS}
