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

    def sizes(self, *, smoke: bool, peer: bool) -> dict[str, int]:
        if smoke:
            return self.smoke_args
        return self.peer_args if peer and self.peer_args else self.args

    def label(self, *, smoke: bool) -> str:
        label = self.title.format(**self.sizes(smoke=smoke, peer=False))
        if not smoke and self.peer_args and self.peer_args != self.args:
            label += " (peers: " + self.title.format(**self.peer_args).split(" ", 1)[1] + ")"
        return label


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
