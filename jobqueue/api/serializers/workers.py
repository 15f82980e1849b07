"""A worker's JSON."""

from rest_framework import serializers


class WorkerSerializer(serializers.Serializer):
    """A runworker supervisor."""

    id = serializers.IntegerField()
    host = serializers.CharField(source="hostname")
    pid = serializers.IntegerField()
    queues = serializers.ListField(child=serializers.CharField(), help_text="[] is all queues.")
    concurrency = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    last_heartbeat = serializers.DateTimeField()
    lost_at = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(choices=["live", "lost"])
    jobs_in_hand = serializers.ListField(child=serializers.IntegerField())
