"""manage.py runworker: a supervisor with N child processes that run jobs."""

import argparse
import logging
import re
from typing import Any

from django.core.management.base import BaseCommand

from jobqueue.worker.supervisor import Supervisor, WorkerOptions

QUEUE_LIST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}(,[A-Za-z0-9][A-Za-z0-9_.:-]{0,99})*$")


def queue_list(value: str) -> tuple[str, ...]:
    if value in ("", "*"):
        return ()
    if not QUEUE_LIST.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of queue names")
    return tuple(value.split(","))


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
            "--shutdown-timeout",
            type=non_negative_float,
            default=30.0,
            help="seconds running jobs get to finish after SIGTERM/SIGINT (default 30)",
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
        shutdown_timeout: float,
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
        )
        Supervisor(options_).run()

    def _log_to_stdout(self, verbosity: int) -> None:
        logger = logging.getLogger("jobqueue")
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
        if not any(getattr(h, "_runworker", False) for h in logger.handlers):
            handler = logging.StreamHandler(self.stdout)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            handler._runworker = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False
