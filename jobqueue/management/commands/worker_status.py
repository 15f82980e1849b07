"""manage.py worker_status: exit 1 when a queue has no live worker, for cron and monitoring."""

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobqueue.health import queues_served
from jobqueue.management.commands.runworker import queue_list


class Command(BaseCommand):
    help = "Print the live workers serving each queue; exit 1 if any queue has none."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--queues",
            type=queue_list,
            default=("default",),
            help="comma-separated queues that must be served (default: default)",
        )

    def handle(self, *, queues: tuple[str, ...], **options: Any) -> None:
        served = queues_served(list(queues))
        for queue, workers in served.items():
            self.stdout.write(f"{queue}: {workers} live worker{'s' if workers != 1 else ''}")
        unserved = [queue for queue, workers in served.items() if not workers]
        if unserved:
            raise CommandError(f"no live worker serves {', '.join(unserved)}", returncode=1)
