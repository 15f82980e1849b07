"""A queue's JSON: its figures per status and window, its limits and its pause."""

from rest_framework import serializers


class WindowSerializer(serializers.Serializer):
    """Jobs of a queue that finished within a recent window."""

    finished = serializers.IntegerField()
    throughput_per_minute = serializers.FloatField()
    mean_duration_seconds = serializers.FloatField(allow_null=True)


class StatusCountsSerializer(serializers.Serializer):
    """Jobs per status: queued and running now, finished ones over the last 60 minutes."""

    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class QueueLimitsSerializer(serializers.Serializer):
    """A queue's global limits, as every worker's claim reads them."""

    concurrency = serializers.IntegerField(
        allow_null=True, help_text="At most this many of its jobs run at once, on all workers."
    )
    rate = serializers.CharField(
        allow_null=True, help_text='At most this many starts per window, e.g. "10/s", "100/min".'
    )
    source = serializers.ChoiceField(
        choices=["settings", "admin"],
        help_text='"settings" (JOBQUEUE["QUEUES"]) or "admin" (a staff override).',
    )


class QueueSerializer(serializers.Serializer):
    """The health of one queue."""

    queue = serializers.CharField()
    paused = serializers.BooleanField(help_text="No worker claims its jobs while it is paused.")
    paused_at = serializers.DateTimeField(allow_null=True)
    limits = QueueLimitsSerializer(allow_null=True, help_text="null for a queue without limits.")
    counts = StatusCountsSerializer()
    ready = serializers.IntegerField(help_text="Queued jobs that are due now.")
    oldest_queued_age_seconds = serializers.FloatField(
        allow_null=True, help_text="How long the oldest due job has waited."
    )
    running = serializers.IntegerField()
    last_5_minutes = WindowSerializer()
    last_60_minutes = WindowSerializer()


class QueuePauseSerializer(serializers.Serializer):
    """The answer to a pause or resume."""

    queue = serializers.CharField()
    paused = serializers.BooleanField()
    changed = serializers.BooleanField(help_text="false when it was paused (resumed) already.")
