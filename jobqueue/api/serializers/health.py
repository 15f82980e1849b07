"""The health probe's JSON: the database, the workers, the migrations."""

from rest_framework import serializers


class DatabaseHealthSerializer(serializers.Serializer):
    """Whether the database answered, and how fast or with what error."""

    ok = serializers.BooleanField()
    latency_ms = serializers.FloatField(required=False, min_value=0, help_text="When ok.")
    error = serializers.CharField(required=False, help_text="The error's class, when not ok.")


class WorkerCountsSerializer(serializers.Serializer):
    """Registered workers by state."""

    live = serializers.IntegerField(min_value=0)
    lost = serializers.IntegerField(min_value=0)


class MigrationsHealthSerializer(serializers.Serializer):
    """The readiness probe's view of the schema: ready once no migration is pending."""

    ok = serializers.BooleanField()
    pending = serializers.ListField(child=serializers.CharField(), help_text="app.name")


class HealthSerializer(serializers.Serializer):
    """Whether the database answers, and how many workers are live."""

    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    database = DatabaseHealthSerializer()
    workers = WorkerCountsSerializer(required=False, help_text="When the database answers.")
    migrations = MigrationsHealthSerializer(required=False, help_text="With ?ready=1.")
