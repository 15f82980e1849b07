"""Set-up shared by the standalone load scripts: Django on the scratch database DATABASE_URL."""

import argparse
import os


def migrated_django(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the script's arguments, set Django up on DATABASE_URL and migrate it.

    Refuses to run without DATABASE_URL: the scripts fill and empty the
    database they are given, so it must be named on purpose.
    """
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        parser.error("set DATABASE_URL to a scratch database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return args
