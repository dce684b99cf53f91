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

import hashlib
import logging
import mimetypes
import os
from collections.abc import Callable
from typing import IO, cast
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
from freshstatic.hashing import hash_stream
from freshstatic.storage import FreshStaticMixin

logger = logging.getLogger("freshstatic")

IMMUTABLE_MAX_AGE_SECONDS = 365 * 24 * 60 * 60
# Files up to this size are read whole and served from memory, so that the
# hash is of exactly the bytes sent; larger ones stream (FileResponse).
IN_MEMORY_MAX_BYTES = 2 * 1024 * 1024
# Digests of served files by (algorithm, path, inode, size, mtime): one hash
# per version of a file, not per request.
DIGEST_CACHE_ENTRIES = 10_000
_digests: dict[tuple[object, ...], str] = {}


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
        if not conf.SERVE:
            return self.vet(request, storage, name, self.get_response(request))
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        try:
            return self.serve(request, storage, name)
        except OSError as exc:  # deleted or unreadable between lookup and read
            logger.warning("Static file %r could not be served: %s", name, exc)
            return HttpResponseNotFound()

    # -- serving ----------------------------------------------------------------

    def serve(
        self, request: HttpRequest, storage: FreshStaticMixin, name: str
    ) -> HttpResponseBase:
        path = storage.served_file(name)
        if path is None:
            return HttpResponseNotFound()
        stream = locations.open_within(path, locations.allowed_roots(storage))
        try:
            before = os.fstat(stream.fileno())
            content_type = _content_type(path)
            response: HttpResponseBase
            last_modified: float | None
            if storage.rewrites_stylesheet(name):
                body, digest = storage.stylesheet(name, stream)
                stream.close()
                response = HttpResponse(b"" if request.method == "HEAD" else body)
                length = len(body)
                # The body also depends on the files it references: only the
                # ETag (its hash) can validate it, not the file's own mtime.
                last_modified = None
            elif before.st_size <= IN_MEMORY_MAX_BYTES:
                # Read whole, so that the hash is of exactly the bytes sent,
                # even if the file is rewritten in place meanwhile.
                data = stream.read()
                after = os.fstat(stream.fileno())
                stream.close()
                if locations.file_identity(after) == locations.file_identity(before):
                    digest = _digest_of(storage, path, after, lambda: data)
                else:
                    digest = hashlib.new(storage.hash_algorithm, data).hexdigest()
                response = HttpResponse(b"" if request.method == "HEAD" else data)
                length = len(data)
                last_modified = after.st_mtime
            else:
                digest = _digest_of(storage, path, before, lambda: stream)
                if request.method == "HEAD":
                    stream.close()
                    response = HttpResponse()
                else:
                    response = FileResponse(stream)
                length = before.st_size
                last_modified = before.st_mtime
            response["Content-Type"] = content_type
            response["Content-Length"] = str(length)
        except BaseException:
            stream.close()
            raise
        return self.finish(request, storage, response, digest, last_modified)

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
        path = storage.served_file(name)
        digest = None
        mtime = None
        if path is not None:
            try:
                with locations.open_within(
                    path, locations.allowed_roots(storage)
                ) as stream:
                    info = os.fstat(stream.fileno())
                    digest = _digest_of(storage, path, info, lambda: stream)
                    mtime = info.st_mtime
            except OSError:
                digest = None
            if digest is not None and not _describes(response, info):
                # What was served is not the file as it is now (WhiteNoise
                # without autorefresh keeps what it read at start-up).
                logger.warning(
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


def _digest_of(
    storage: FreshStaticMixin,
    path: str,
    info: os.stat_result,
    content: Callable[[], bytes | IO[bytes]],
) -> str:
    """The digest of a file version, hashed once per version (identity)."""
    key = (storage.hash_algorithm, path, *locations.file_identity(info))
    digest = _digests.get(key)
    if digest is None:
        data = content()
        if isinstance(data, bytes):
            digest = hashlib.new(storage.hash_algorithm, data).hexdigest()
        else:
            digest = hash_stream(data, storage.hash_algorithm)
            data.seek(0)
        if len(_digests) >= DIGEST_CACHE_ENTRIES:
            _digests.clear()
        _digests[key] = digest
    return digest


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
