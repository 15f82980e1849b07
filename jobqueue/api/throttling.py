"""Per-user rate limit on submissions; reads, cancels and retries are not limited."""

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

SUBMIT_SCOPE = "jobs-submit"


class SubmitRateThrottle(ScopedRateThrottle):
    """``ScopedRateThrottle`` applied to ``create`` only; 429 with ``Retry-After`` past the rate.

    The rate is ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["jobs-submit"]``,
    read on each request so that a settings change (a test) takes effect.
    Counts live in Django's default cache: use a shared cache (Redis,
    Memcached) when several web processes must share one limit.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(view, "action", None) != "create":
            return True
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
