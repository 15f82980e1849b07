"""System checks: jobqueue's settings, its API task list and its periodic schedules are sound."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.utils.module_loading import import_string


@register("jobqueue")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from django.tasks import Task

    from jobqueue.conf import get_settings
    from jobqueue.scheduling.periodic import schedule_errors

    try:
        conf = get_settings()
    except (TypeError, ValueError) as e:
        return [Error(f"JOBQUEUE setting is invalid: {e}", id="jobqueue.E002")]
    errors = []
    if conf.LISTEN_DATABASE not in settings.DATABASES:
        errors.append(
            Error(
                f"JOBQUEUE['LISTEN_DATABASE'] names {conf.LISTEN_DATABASE!r}, "
                "which is not in DATABASES",
                hint="Name a DATABASES alias that reaches PostgreSQL directly, or 'default'.",
                id="jobqueue.E005",
            )
        )
    for path in conf.API_TASKS:
        try:
            task = import_string(path)
        except ImportError as e:
            errors.append(Error(f"JOBQUEUE['API_TASKS'] names {path!r}: {e}", id="jobqueue.E003"))
            continue
        if not isinstance(task, Task):
            errors.append(
                Error(
                    f"JOBQUEUE['API_TASKS'] names {path!r}, which is not a Task",
                    hint="Decorate the function with django.tasks.task.",
                    id="jobqueue.E004",
                )
            )
    errors.extend(
        Error(str(e), hint="See README, Periodic jobs.", id="jobqueue.E005")
        for e in schedule_errors(conf)
    )
    return errors
