"""The exposed tasks' JSON: each task with its parameters."""

from rest_framework import serializers


class TaskParameterSerializer(serializers.Serializer):
    """One parameter of an exposed task."""

    name = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=["positional", "positional_or_keyword", "keyword", "var_positional", "var_keyword"]
    )
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    type = serializers.CharField(allow_null=True, help_text="JSON type, or null for any value.")


class ExposedTaskSerializer(serializers.Serializer):
    """A task that may be submitted, with the arguments it takes."""

    name = serializers.CharField()
    description = serializers.CharField()
    queue = serializers.CharField(source="task.queue_name")
    priority = serializers.IntegerField(source="task.priority")
    parameters = TaskParameterSerializer(many=True)
