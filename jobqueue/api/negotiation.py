"""Content negotiation with a shortcut for the requests nearly every client sends.

The API renders JSON only. Clients send no Accept header, ``*/*`` or
``application/json``; for those the answer is the JSON renderer, and parsing
the header to find that out was a tenth of a job poll's time in DRF's view.
Any other header, or a ``?format=`` override, goes through DRF's negotiation.
"""

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request

JSON = "application/json"
# Accept headers whose answer is the JSON renderer, as DRF's negotiation decides it.
PLAIN_ACCEPTS = frozenset({"", "*/*", JSON})


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once for the plain JSON cases."""

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        if (
            renderers
            and renderers[0].media_type == JSON
            and not format_suffix
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
            and request.META.get("HTTP_ACCEPT", "").strip() in PLAIN_ACCEPTS
        ):
            return renderers[0], JSON
        return super().select_renderer(request, renderers, format_suffix)
