"""The error body every failure answers with, and the codes it may carry."""

from rest_framework import serializers

# The ``code`` of every error body (errors.error_code): DRF's exception codes, and ours.
ERROR_CODES = (
    "invalid",
    "parse_error",
    "not_authenticated",
    "authentication_failed",
    "permission_denied",
    "not_found",
    "method_not_allowed",
    "not_acceptable",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "throttled",
)


class ErrorSerializer(serializers.Serializer):
    """Every 4xx body: ``detail`` says what to change, ``code`` names the error for programs.

    ``errors`` comes with input errors (400): per field, a list of messages
    (for a field of ``kwargs``, an object per key).
    """

    detail = serializers.CharField()
    code = serializers.ChoiceField(choices=ERROR_CODES)
    errors = serializers.DictField(required=False)
