"""
A naive far-future policy, as an nginx ``expires max`` would apply it: every
static response is cacheable for a year, whatever its URL. The browser test
runs freshstatic and plain StaticFilesStorage behind this same policy.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase


class FarFutureStaticMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.path.startswith("/static/") and response.status_code == 200:
            response["Cache-Control"] = "public, max-age=31536000, immutable"
        return response
