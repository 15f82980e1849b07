"""manage.py queues pause|resume|list: stop and restart claiming from a queue (incidents)."""

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from jobqueue.queue_names import RULE, is_queue_name
from jobqueue.scheduling import pauses


def queue_name(value: str) -> str:
    if not is_queue_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a queue name: {RULE}")
    return value


class Command(BaseCommand):
    help = (
        "Pause a queue (no worker claims its jobs from the moment this returns; running jobs "
        "finish, enqueuing still works), resume it, or list the paused queues."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        for name in ("pause", "resume"):
            actions.add_parser(name, help=f"{name} a queue").add_argument("queue", type=queue_name)
        actions.add_parser("list", help="the paused queues")

    def handle(self, *, action: str, queue: str = "", **options: Any) -> None:
        if action == "pause":
            changed = pauses.pause(queue, by="manage.py queues")
            self.stdout.write(f"paused {queue}" if changed else f"{queue} was already paused")
        elif action == "resume":
            changed = pauses.resume(queue)
            self.stdout.write(f"resumed {queue}" if changed else f"{queue} was not paused")
        else:
            for pause in pauses.paused().values():
                by = f" by {pause.paused_by}" if pause.paused_by else ""
                self.stdout.write(
                    f"{pause.queue}\tpaused since {pause.paused_at:%Y-%m-%d %H:%M:%S%z}{by}"
                )
