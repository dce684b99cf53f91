"""
FreshStaticMiddleware: static responses whose caching is safe by construction.

A ``?v=`` URL may be cached forever only if ``v`` is the hash of the exact
bytes served for it. So for every request under ``STATIC_URL`` the served
bytes are hashed (by file identity: a changed file is always re-hashed) and
``Cache-Control: public, max-age=31536000, immutable`` is sent only when
``v`` matches; anything else gets ``no-cache`` with an ``ETag`` and
``Last-Modified``, and conditional requests are answered with 304.

By default the middleware serves the files itself, re-reading them on every
request; with ``FRESHSTATIC["SERVE"] = False`` it lets what follows it
(WhiteNoise, ``django.contrib.staticfiles.views.serve``) serve, and only
corrects the caching headers.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.storage import storages
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
)
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date, parse_http_date_safe, quote_etag

from freshstatic import locations
from freshstatic.conf import conf
from freshstatic.log import warn_once
from freshstatic.storage import FreshStaticMixin

logger = logging.getLogger("freshstatic")

IMMUTABLE_MAX_AGE_SECONDS = 365 * 24 * 60 * 60


class FreshStaticMiddleware:
    """Serve (or vet) requests under STATIC_URL; everything else passes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        prefix = static_prefix()
        if prefix is None or not request.path.startswith(prefix):
            return self.get_response(request)
        storage = storages["staticfiles"]
        if not isinstance(storage, FreshStaticMixin):
            return self.get_response(request)
        requested = request.path[len(prefix) :]
        name = locations.clean_name(requested)
        if name is None or requested.endswith("/"):
            if not conf.SERVE:
                return self.get_response(request)
            return HttpResponseNotFound()
        if storage.served_files.is_ignored(name):
            # Dotfiles and what collectstatic ignores (.env, .git/config):
            # never served, whoever would serve them.
            return HttpResponseNotFound()
        if not conf.SERVE:
            return self.vet(request, storage, name, self.get_response(request))
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        try:
            return self.serve(request, storage, name)
        except OSError as exc:  # deleted or unreadable between lookup and read
            warn_once(
                f"{name}\0unreadable",
                "Static file %r could not be served: %s",
                name,
                exc,
            )
            return HttpResponseNotFound()

    # -- serving ----------------------------------------------------------------

    def serve(
        self, request: HttpRequest, storage: FreshStaticMixin, name: str
    ) -> HttpResponseBase:
        state = storage.hash_cache.refresh()
        try:
            served = storage.served_files.open(name, state.generation)
        except locations.OutsideRoots as exc:
            warn_once(
                f"{name}\0outside",
                "Static file %r resolves to %r, outside the static locations "
                "(a symlink?); it is never served.",
                name,
                str(exc),
            )
            return HttpResponseNotFound()
        if served is None:
            return HttpResponseNotFound()
        response: HttpResponseBase
        if served.stream is not None and request.method != "HEAD":
            response = FileResponse(served.stream)
        else:
            if served.stream is not None:
                served.stream.close()
            body = served.body if request.method != "HEAD" else None
            response = HttpResponse(body or b"")
        response["Content-Type"] = _content_type(name)
        response["Content-Length"] = str(served.size)
        return self.finish(request, storage, response, served.digest, served.mtime)

    # -- vetting what something else served ----------------------------------------

    def vet(
        self,
        request: HttpRequest,
        storage: FreshStaticMixin,
        name: str,
        response: HttpResponseBase,
    ) -> HttpResponseBase:
        if response.status_code not in (200, 304):
            return response
        digest = None
        mtime = None
        on_disk = storage.served_files.on_disk(name)
        if on_disk is not None:
            digest, info = on_disk
            mtime = info.st_mtime
            if not _describes(response, info):
                # What was served is not the file as it is now (WhiteNoise
                # without autorefresh keeps what it read at start-up).
                warn_once(
                    f"{name}\0stale",
                    "The response for static file %r does not match the file on "
                    "disk (stale copy?); it is not marked immutable.",
                    name,
                )
                digest = None
        return self.headers(
            request, storage, response, digest, mtime, conditional=False
        )

    # -- headers ------------------------------------------------------------------

    def finish(
        self,
        request: HttpRequest,
        storage: FreshStaticMixin,
        response: HttpResponseBase,
        digest: str,
        mtime: float | None,
    ) -> HttpResponseBase:
        response = self.headers(
            request, storage, response, digest, mtime, conditional=True
        )
        conditional = get_conditional_response(
            request,
            etag=response["ETag"],
            last_modified=None if mtime is None else int(mtime),
            # Any response works at run time; the stubs only name HttpResponse.
            response=cast(HttpResponse, response),
        )
        if conditional is not response:
            response.close()
        return conditional if conditional is not None else response

    def headers(
        self,
        request: HttpRequest,
        storage: FreshStaticMixin,
        response: HttpResponseBase,
        digest: str | None,
        mtime: float | None,
        *,
        conditional: bool,
    ) -> HttpResponseBase:
        for header in ("Cache-Control", "Expires"):
            if header in response:
                del response[header]
        current = None if digest is None else digest[: storage.hash_length]
        if current is not None and request.GET.get(storage.query_param) == current:
            patch_cache_control(
                response, public=True, max_age=IMMUTABLE_MAX_AGE_SECONDS, immutable=True
            )
        else:
            patch_cache_control(response, no_cache=True)
        if digest is not None and (conditional or "ETag" not in response):
            response["ETag"] = quote_etag(digest[:32])
        if mtime is not None and (conditional or "Last-Modified" not in response):
            response["Last-Modified"] = http_date(int(mtime))
        return response


def static_prefix() -> str | None:
    """The path part of a local STATIC_URL ("/static/"), or None for a CDN."""
    url = settings.STATIC_URL
    if not url:
        return None
    parts = urlsplit(url)
    if parts.netloc:
        return None
    return parts.path if parts.path.endswith("/") else parts.path + "/"


def _content_type(path: str) -> str:
    content_type, encoding = mimetypes.guess_type(path)
    if encoding == "gzip":
        return "application/gzip"
    if content_type is None:
        return "application/octet-stream"
    if content_type.startswith("text/") or content_type in (
        "application/javascript",
        "application/json",
        "image/svg+xml",
    ):
        return f"{content_type}; charset=utf-8"
    return content_type


def _describes(response: HttpResponseBase, info: os.stat_result) -> bool:
    """Whether the response serves the file version ``info`` describes."""
    streamed = getattr(response, "file_to_stream", None)
    try:
        fileno = streamed.fileno() if streamed is not None else None
    except (AttributeError, OSError, ValueError):
        fileno = None
    current = locations.file_identity(info)
    if fileno is not None and locations.file_identity(os.fstat(fileno)) != current:
        return False  # a FileResponse sending another version of the file
    # Its headers too: WhiteNoise without autorefresh sends the current file
    # under the length and date it read at start-up.
    length = response.get("Content-Length")
    if (
        response.status_code == 200
        and length is not None
        and int(length) != info.st_size
    ):
        return False
    modified = parse_http_date_safe(response.get("Last-Modified") or "")
    return modified is None or modified == int(info.st_mtime)
