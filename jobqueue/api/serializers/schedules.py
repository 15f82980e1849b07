"""A periodic schedule's JSON: as declared in settings, and where it stands."""

from rest_framework import serializers


class ScheduleSerializer(serializers.Serializer):
    """A periodic schedule: as declared in settings, and where it stands."""

    name = serializers.CharField()
    task = serializers.CharField(source="declared.task")
    cron = serializers.CharField(source="declared.cron")
    timezone = serializers.CharField(source="declared.timezone")
    queue = serializers.CharField(source="declared.queue")
    enabled = serializers.BooleanField()
    last_run_at = serializers.DateTimeField(
        source="last_tick",
        help_text="The newest tick enqueued (or when the schedule was first "
        "seen or enabled again).",
    )
    last_job = serializers.IntegerField(source="last_job_id", allow_null=True)
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="null while disabled.")
