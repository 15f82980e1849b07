"""manage.py purge_jobs: delete old finished jobs in small batches (safe from cron)."""

import argparse
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand

from jobqueue.models import FINISHED
from jobqueue.purge import PurgePlan, PurgeReport, count, purge
from jobqueue.queue_names import RULE, is_queue_name

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(value: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` (or ``90s``) as a timedelta."""
    match = DURATION.match(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration: use a number and a unit s, m, h, d or w, such as 7d"
        )
    return timedelta(**{UNITS[match[2]]: float(match[1])})


def finished_statuses(value: str) -> tuple[str, ...]:
    statuses = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    wrong = [s for s in statuses if s not in FINISHED]
    if not statuses or wrong:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give a comma-separated list of {', '.join(FINISHED)} "
            "(queued and running jobs are never purged)"
        )
    return statuses


def queue_name(value: str) -> str:
    if not is_queue_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a queue name: {RULE}")
    return value


def batch_size(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 100_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100000, got {number}")
    return number


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than the retention, in small batches that never block workers."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--older-than",
            type=duration,
            default=None,
            help="age of finish, such as 30m, 12h, 7d (default: the RETENTION_DAYS setting)",
        )
        parser.add_argument(
            "--status",
            type=finished_statuses,
            default=tuple(FINISHED),
            help="comma-separated finished statuses (default: succeeded,failed,cancelled)",
        )
        parser.add_argument("--queue", type=queue_name, default=None, help="only this queue")
        parser.add_argument(
            "--dry-run", action="store_true", help="print what would go and delete nothing"
        )
        parser.add_argument(
            "--batch-size", type=batch_size, default=1000, help="rows per delete (default 1000)"
        )

    def handle(
        self,
        *,
        older_than: timedelta | None,
        status: tuple[str, ...],
        queue: str | None,
        dry_run: bool,
        batch_size: int,
        verbosity: int,
        **options: Any,
    ) -> None:
        plan = PurgePlan.retention(older_than, statuses=status, queue=queue, batch_size=batch_size)
        if dry_run:
            self._print(count(plan), plan, verb="would delete")
            return
        on_batch = (
            (lambda n: self.stdout.write(f"deleted a batch of {n}")) if verbosity > 1 else None
        )
        self._print(purge(plan, on_batch=on_batch), plan, verb="deleted")

    def _print(self, report: PurgeReport, plan: PurgePlan, *, verb: str) -> None:
        cutoff = plan.before.isoformat(timespec="seconds")
        batches = f" in {report.batches} batches" if verb == "deleted" else ""
        self.stdout.write(f"{verb} {report.total} jobs finished before {cutoff}{batches}")
        for (status, queue), rows in sorted(report.jobs.items()):
            self.stdout.write(f"  {status:<10} {queue:<20} {rows}")
        self.stdout.write(f"{verb} {report.workers} workers lost before {cutoff}")
