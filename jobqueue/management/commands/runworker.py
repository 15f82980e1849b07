"""manage.py runworker: a supervisor with N child processes that run jobs."""

import argparse
import logging
from typing import Any

from django.core.management.base import BaseCommand

from jobqueue.logs import worker_formatter
from jobqueue.queue_names import RULE, is_queue_name
from jobqueue.worker import telemetry
from jobqueue.worker.supervisor import Supervisor, WorkerOptions


def queue_list(value: str) -> tuple[str, ...]:
    if value in ("", "*"):
        return ()
    names = tuple(value.split(","))
    if not all(is_queue_name(name) for name in names):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a comma-separated list of queue names ({RULE})"
        )
    return names


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {number}")
    return number


def port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {number}")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {number}")
    return number


class Command(BaseCommand):
    help = "Run jobs: a supervisor process claims them and N child processes execute them."
    # Only jobqueue's own checks: the project-wide ones (URLs, admin, API schema)
    # import the whole web stack and would add most of a second to every start.
    requires_system_checks = ["jobqueue"]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--queues", type=queue_list, default=(), help="comma-separated queues (default: all)"
        )
        parser.add_argument("--concurrency", type=positive_int, default=1, help="child processes")
        parser.add_argument(
            "--async-slots",
            type=non_negative_int,
            default=None,
            help="async-mode jobs each child runs at once (default: JOBQUEUE['ASYNC_SLOTS'])",
        )
        parser.add_argument(
            "--threads",
            type=non_negative_int,
            default=None,
            help="thread-mode jobs each child runs at once (default: JOBQUEUE['THREADS'])",
        )
        parser.add_argument(
            "--burst", action="store_true", help="exit once no job is ready (cron, CI)"
        )
        parser.add_argument("--max-jobs", type=positive_int, default=None, help="exit after N jobs")
        parser.add_argument(
            "--max-jobs-per-child",
            type=positive_int,
            default=None,
            help="replace a child process once it was sent N jobs (task code that leaks)",
        )
        parser.add_argument(
            "--max-child-memory",
            type=positive_int,
            default=None,
            metavar="MB",
            help="replace a child process, between jobs, once its memory passes MB",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=non_negative_float,
            default=30.0,
            help="seconds running jobs get to finish after SIGTERM/SIGINT (default 30)",
        )
        parser.add_argument(
            "--metrics-port",
            type=port,
            default=None,
            help="serve this worker's Prometheus metrics (/metrics) and liveness (/healthz)",
        )
        parser.add_argument(
            "--metrics-host", default="0.0.0.0", help="address of --metrics-port (default all)"
        )

    def handle(
        self,
        *,
        queues: tuple[str, ...],
        concurrency: int,
        async_slots: int | None,
        threads: int | None,
        burst: bool,
        max_jobs: int | None,
        max_jobs_per_child: int | None,
        max_child_memory: int | None,
        shutdown_timeout: float,
        metrics_port: int | None,
        metrics_host: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        self._log_to_stdout(verbosity)
        options_ = WorkerOptions(
            queues=queues,
            concurrency=concurrency,
            async_slots=async_slots,
            threads=threads,
            burst=burst,
            max_jobs=max_jobs,
            shutdown_timeout=shutdown_timeout,
            max_jobs_per_child=max_jobs_per_child,
            max_child_memory=max_child_memory,
        )
        supervisor = Supervisor(options_)
        telemetry.attach(supervisor)
        if metrics_port is not None:
            telemetry.serve(metrics_port, metrics_host)
        supervisor.run()

    def _log_to_stdout(self, verbosity: int) -> None:
        logger = logging.getLogger("jobqueue")
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
        if not any(getattr(h, "_runworker", False) for h in logger.handlers):
            handler = logging.StreamHandler(self.stdout)
            handler.setFormatter(worker_formatter())
            handler._runworker = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False
