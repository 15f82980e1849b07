"""manage.py ensure_demo_user: an `admin` superuser (password `admin`) to try jobqueue with."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the development superuser admin/admin if it does not exist (DEBUG only)."

    def handle(self, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("refusing to create a demo superuser with DEBUG off")
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            return
        user_model.objects.create_superuser("admin", "admin@example.com", "admin")
        self.stdout.write("created superuser admin (password admin)")
