"""
FreshStaticMiddleware: static responses whose caching is safe by construction.

A ``?v=`` URL may be cached forever only if ``v`` is the hash of the exact
bytes served for it. So for every request under ``STATIC_URL`` the served
bytes are hashed (by file identity: a changed file is always re-hashed) and
``Cache-Control: public, max-age=31536000, immutable`` is sent only when
``v`` matches; anything else gets ``no-cache`` with an ``ETag`` and
``Last-Modified``, and conditional requests are answered with 304.

By default the middleware serves the files itself: compressed (zstd, br or
gzip, as the client prefers; each version compressed once), in byte ranges,
under WSGI and ASGI alike (file reads never on the event loop). With
``FRESHSTATIC["SERVE"] = False`` it lets what follows it (WhiteNoise,
``django.contrib.staticfiles.views.serve``) serve, and only corrects the
caching headers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from time import monotonic
from typing import IO, Any, cast
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
    HttpResponseNotModified,
)
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import (
    http_date,
    parse_http_date_safe,
    quote_etag,
)

from freshstatic import compress, delta, live, locations, versions
from freshstatic.conf import conf
from freshstatic.log import warn_once
from freshstatic.served import BoundedCache, Dependency, Served
from freshstatic.storage import FreshStaticMixin

logger = logging.getLogger("freshstatic")

IMMUTABLE_MAX_AGE_SECONDS = 365 * 24 * 60 * 60
# The size of each read when a file is streamed.
STREAM_CHUNK_BYTES = 64 * 1024

# Responses made from memory are answered again from memory, after one
# stat() of each file they were built from: what they take (bodies shared
# with the versions kept), and how long before they are made anew.
PREPARED_MAX_BYTES = 16 * 1024 * 1024
PREPARED_SECONDS = 60.0
# What one prepared response takes beside its body, its headers and its key.
_PREPARED_OVERHEAD_BYTES = 512

_Route = tuple[FreshStaticMixin, str]


class FreshStaticMiddleware:
    """Serve (or vet) requests under STATIC_URL; everything else passes."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if live.handles(request):  # live: the live page's event stream and URLs
            return live.events(request, asynchronous=self.is_async)
        if self.is_async:
            return self.__acall__(request)
        prepared = _prepared_response(request)
        if prepared is not None:
            return prepared
        get_response = cast(
            Callable[[HttpRequest], HttpResponseBase], self.get_response
        )
        route = self.route(request)
        if route is None:
            return live.inject(request, get_response(request))  # live: the script
        if isinstance(route, HttpResponseBase):
            return route
        storage, name = route
        if not conf.SERVE:
            return self.vet(request, storage, name, get_response(request))
        return self.serve(request, storage, name)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response = cast(
            Callable[[HttpRequest], Awaitable[HttpResponseBase]], self.get_response
        )
        route = self.route(request)
        if route is None:
            return await live.ainject(request, await get_response(request))  # live
        if isinstance(route, HttpResponseBase):
            return route
        storage, name = route
        if not conf.SERVE:
            response = await get_response(request)
            return await sync_to_async(self.vet, thread_sensitive=False)(
                request, storage, name, response
            )
        # Resolving, hashing and reading files happen in a thread, never on
        # the event loop; so does every read of a streamed body.
        response = await sync_to_async(self._serve_again, thread_sensitive=False)(
            request, storage, name
        )
        return _streamed_asynchronously(response)

    def _serve_again(
        self, request: HttpRequest, storage: FreshStaticMixin, name: str
    ) -> HttpResponseBase:
        """serve(), from memory when the response is prepared already."""
        prepared = _prepared_response(request)
        return self.serve(request, storage, name) if prepared is None else prepared

    def route(self, request: HttpRequest) -> HttpResponseBase | _Route | None:
        """
        None for a request that is not for a static file (it passes), a
        response for one that can only be refused, else the storage and the
        clean static name.
        """
        prefix = static_prefix()
        if prefix is None or not request.path.startswith(prefix):
            return None
        storage = storages["staticfiles"]
        if not isinstance(storage, FreshStaticMixin):
            return None
        requested = request.path[len(prefix) :]
        name = locations.clean_name(requested)
        if name is None or requested.endswith("/"):
            return None if not conf.SERVE else HttpResponseNotFound()
        if storage.served_files.is_ignored(name):
            # Dotfiles and what collectstatic ignores (.env, .git/config):
            # never served, whoever would serve them.
            return HttpResponseNotFound()
        if conf.SERVE and request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return storage, name

    # -- serving ----------------------------------------------------------------

    def serve(
        self, request: HttpRequest, storage: FreshStaticMixin, name: str
    ) -> HttpResponseBase:
        state = storage.hash_cache.refresh()
        name, version = storage.served_files.requested(
            name, request.GET.get(storage.query_param), state.generation
        )
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
        except OSError as exc:  # unreadable, or gone between lookup and read
            warn_once(
                f"{name}\0unreadable",
                "Static file %r could not be served: %s",
                name,
                exc,
            )
            return HttpResponseNotFound()
        # An older version the store keeps, when v names one.
        current = served
        served = versions.older(served, storage.served_files, name, version)
        if served is None:
            return HttpResponseNotFound()
        try:
            response = self.respond(request, storage, name, version, served)
        except BaseException:
            served.close()
            raise
        if served is current and (
            not version
            or version == served.digest[: storage.hash_length]
            # Else another process may store the version asked for later.
            or versions.store() is None
        ):
            _prepare(request, storage, name, state.generation, served, response)
        return response

    def respond(
        self,
        request: HttpRequest,
        storage: FreshStaticMixin,
        name: str,
        version: str | None,
        served: Served,
    ) -> HttpResponseBase:
        content_type = _content_type(name)
        compressible = compress.is_compressible(content_type, served.size)
        ranged = "HTTP_RANGE" in request.META
        coding = None
        # A delta against a version the client has (RFC 9842), else a coding.
        dcz = delta.negotiate(request, served) if compressible and not ranged else None
        if compressible and not ranged:
            coding = compress.negotiate(
                request.META.get("HTTP_ACCEPT_ENCODING", ""),
                compress.available(conf.COMPRESSION),
            )
        level = conf.COMPRESSION_LEVELS.get(coding or "", 0)
        encoded = None if dcz is None else dcz.body
        coding = coding if dcz is None else dcz.coding
        # One ETag per version, coding and dictionary.
        tag = coding if dcz is None else dcz.tag
        if coding is not None and not served.in_memory:
            # Large: sent compressed once it has been, off the request path.
            encoded = storage.served_files.encoded_later(
                served, coding, level, served.path
            )
            if encoded is None:
                coding = None

        # A conditional request is answered before any body is read.
        not_modified = get_conditional_response(
            request,
            etag=_etag(served.digest, tag),
            last_modified=None if served.mtime is None else int(served.mtime),
        )
        if not_modified is not None:
            served.close()
            return self.advertised(
                request,
                storage,
                version,
                self.headers_for(
                    version, storage, not_modified, served, tag, compressible
                ),
                served,
                compressible,
            )

        head = request.method == "HEAD"
        response: HttpResponseBase
        if served.in_memory or encoded is not None:
            body = served.read() if encoded is None else encoded
            if coding is not None and encoded is None:
                body = storage.served_files.encoded(served, coding, level)
            versions.keep(storage.served_files, name, served)
            served.close()
            response, length = _in_memory(request, body, served, coding, head)
        else:
            response, length = _from_file(request, served, head)
        response["Content-Type"] = content_type
        response["Content-Length"] = str(length)
        if coding is not None:
            response["Content-Encoding"] = coding
        return self.advertised(
            request,
            storage,
            version,
            self.headers_for(version, storage, response, served, tag, compressible),
            served,
            compressible,
        )

    def advertised(
        self,
        request: HttpRequest,
        storage: FreshStaticMixin,
        version: str | None,
        response: HttpResponseBase,
        served: Served,
        compressible: bool,
    ) -> HttpResponseBase:
        """``response`` offered as a dictionary for later versions (RFC 9842)."""
        return delta.advertise(
            request,
            response,
            compressible=compressible,
            size=served.size,
            version=version,
            version_in=storage.served_files.version_in,
        )

    def headers_for(
        self,
        version: str | None,
        storage: FreshStaticMixin,
        response: HttpResponseBase,
        served: Served,
        coding: str | None,
        compressible: bool,
    ) -> HttpResponseBase:
        response = self.headers(
            version, storage, response, served.digest, served.mtime, conditional=True
        )
        response["ETag"] = _etag(served.digest, coding)
        if compressible:
            response["Vary"] = "Accept-Encoding"
        if response.status_code in (200, 206, 416) and coding is None:
            response["Accept-Ranges"] = "bytes"
        return response

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
            request.GET.get(storage.query_param),
            storage,
            response,
            digest,
            mtime,
            conditional=False,
        )

    # -- headers ------------------------------------------------------------------

    def headers(
        self,
        version: str | None,
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
        if current is not None and version == current:
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


# -- prepared responses ------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """A response made from memory, to make again while its files hold."""

    # The settings it was made under (see _settings_changed).
    epoch: int
    deadline: float
    files: tuple[Dependency, ...]
    etag: str
    last_modified: int | None
    # The full response's headers and body; the 304's headers.
    ok: tuple[tuple[tuple[str, str], ...], bytes] | None
    not_modified: tuple[tuple[str, str], ...] | None
    key_bytes: int

    def cost(self) -> int:
        headers = (self.ok[0] if self.ok else ()) + (self.not_modified or ())
        return (
            _PREPARED_OVERHEAD_BYTES
            + self.key_bytes
            + (len(self.ok[1]) if self.ok else 0)
            + sum(len(name) + len(value) for name, value in headers)
            + sum(len(path) for path, _identity in self.files)
        )


_prepared: BoundedCache[_Prepared] = BoundedCache(PREPARED_MAX_BYTES, _Prepared.cost)
_epoch = 0


def _prepared_key(request: HttpRequest) -> tuple[str, str, str, str] | None:
    """
    What a response made from memory depends on in ``request``; None when
    it is made each time (byte ranges, deltas, If-Match).
    """
    method = request.method
    if method != "GET" and method != "HEAD":
        return None
    meta = request.META
    if (
        "HTTP_RANGE" in meta
        or "HTTP_AVAILABLE_DICTIONARY" in meta
        or "HTTP_IF_MATCH" in meta
        or "HTTP_IF_UNMODIFIED_SINCE" in meta
    ):
        return None
    return (
        method,
        request.path,
        meta.get("QUERY_STRING", ""),
        meta.get("HTTP_ACCEPT_ENCODING", ""),
    )


def _prepared_response(request: HttpRequest) -> HttpResponseBase | None:
    """The response to ``request`` made again from memory, or None."""
    key = _prepared_key(request)
    if key is None:
        return None
    storage = storages["staticfiles"]
    if not isinstance(storage, FreshStaticMixin):
        return None
    entry = _prepared.get((*key, storage.hash_cache.refresh().generation))
    if entry is None or entry.epoch != _epoch or entry.deadline < monotonic():
        return None
    for path, identity in entry.files:
        try:
            info = os.stat(path)
        except OSError:
            return None
        if locations.file_identity(info) != identity:
            return None
    meta = request.META
    if meta.get("HTTP_IF_NONE_MATCH") == entry.etag and entry.not_modified:
        # The client has this very entity: what get_conditional_response()
        # answers, without parsing.
        return _with_headers(HttpResponseNotModified(), entry.not_modified)
    if "HTTP_IF_NONE_MATCH" in meta or "HTTP_IF_MODIFIED_SINCE" in meta:
        conditional = get_conditional_response(
            request, etag=entry.etag, last_modified=entry.last_modified
        )
        if conditional is not None:
            if conditional.status_code != 304 or entry.not_modified is None:
                return None
            return _with_headers(conditional, entry.not_modified)
    if entry.ok is None:
        return None
    headers, body = entry.ok
    return _with_headers(HttpResponse(body), headers)


def _with_headers(
    response: HttpResponseBase, headers: tuple[tuple[str, str], ...]
) -> HttpResponseBase:
    for name, value in headers:
        response[name] = value
    return response


def _prepare(
    request: HttpRequest,
    storage: FreshStaticMixin,
    name: str,
    generation: str | None,
    served: Served,
    response: HttpResponseBase,
) -> None:
    """Keep ``response`` (of the current version) to make it again."""
    key = _prepared_key(request)
    status = response.status_code
    if key is None or status not in (200, 304) or response.streaming:
        return
    etag = response.get("ETag")
    if etag is None:
        return
    # Every file the body was built from, as the digest describes them.
    version = storage.served_files.version(name, generation, None)
    if version is None or version.digest != served.digest or not version.files():
        return
    headers = tuple(response.items())
    full_key = (*key, generation)
    files = version.files()
    now = monotonic()
    kept = _prepared.get(full_key)
    if (
        kept is None
        or kept.epoch != _epoch
        or kept.deadline < now  # made anew: kept anew, for as long again
        or kept.etag != etag
        or kept.files != files
    ):
        kept = _Prepared(
            epoch=_epoch,
            deadline=now + PREPARED_SECONDS,
            files=files,
            etag=etag,
            last_modified=parse_http_date_safe(response.get("Last-Modified") or ""),
            ok=None,
            not_modified=None,
            key_bytes=sum(len(part) for part in key),
        )
    if status == 200:
        kept = replace(kept, ok=(headers, cast(HttpResponse, response).content))
    else:
        kept = replace(kept, not_modified=headers)
    _prepared.put(full_key, kept)


def forget_prepared() -> None:
    """Drop every prepared response (made anew at the next request)."""
    _prepared.clear()


def _settings_changed(**kwargs: Any) -> None:
    # Any setting may change what a response is (STATIC_URL, STORAGES,
    # FRESHSTATIC, DEBUG, MIDDLEWARE...): entries made before are not used.
    global _epoch
    _epoch += 1
    _prepared.clear()


setting_changed.connect(_settings_changed)


def _reset_after_fork() -> None:
    _prepared.reset_lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


def static_prefix() -> str | None:
    """
    The path part of STATIC_URL ("/static/"). With a host
    ("https://cdn.example.com/static/"), requests for that path are the
    CDN's, pulling from this server as its origin.
    """
    url = settings.STATIC_URL
    if not url:
        return None
    path = urlsplit(url).path or "/"
    return path if path.endswith("/") else path + "/"


def _content_type(path: str) -> str:
    # The type depends on the last suffix only (".gz" included): remembered
    # per suffix, of which a request can make only so many.
    dot = path.rfind(".")
    suffix = path[dot:].lower() if dot > path.rfind("/") else ""
    return _content_type_of_suffix(suffix[:16])


@functools.lru_cache(maxsize=256)
def _content_type_of_suffix(suffix: str) -> str:
    content_type, encoding = mimetypes.guess_type(f"file{suffix}")
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


def _etag(digest: str, coding: str | None) -> str:
    """One entity tag per version and coding."""
    return quote_etag(digest[:32] + (f"-{coding}" if coding else ""))


def _in_memory(
    request: HttpRequest,
    body: bytes,
    served: Served,
    coding: str | None,
    head: bool,
) -> tuple[HttpResponseBase, int]:
    byte_range = None if coding else _byte_range(request, len(body), served)
    if byte_range == "unsatisfiable":
        return _unsatisfiable(len(body)), 0
    if isinstance(byte_range, tuple):
        start, end = byte_range
        part = body[start : end + 1]
        response = HttpResponse(b"" if head else part, status=206)
        response["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
        return response, len(part)
    return HttpResponse(b"" if head else body), len(body)


def _from_file(
    request: HttpRequest, served: Served, head: bool
) -> tuple[HttpResponseBase, int]:
    stream = served.stream
    assert stream is not None
    byte_range = _byte_range(request, served.size, served)
    if byte_range == "unsatisfiable" or head:
        served.close()
        if byte_range == "unsatisfiable":
            return _unsatisfiable(served.size), 0
        return HttpResponse(), served.size
    if isinstance(byte_range, tuple):
        start, end = byte_range
        stream.seek(start)
        response = FileResponse(_Slice(stream, end + 1 - start), status=206)
        response["Content-Range"] = f"bytes {start}-{end}/{served.size}"
        return response, end + 1 - start
    return FileResponse(stream), served.size


def _unsatisfiable(size: int) -> HttpResponse:
    response = HttpResponse(status=416)
    response["Content-Range"] = f"bytes */{size}"
    return response


def _byte_range(
    request: HttpRequest, size: int, served: Served
) -> tuple[int, int] | str | None:
    """
    The single byte range asked for, as (first, last); "unsatisfiable"; or
    None to send the whole body (no Range, several ranges, a malformed one,
    or an If-Range that no longer holds).
    """
    header = request.META.get("HTTP_RANGE", "")
    if not header.startswith("bytes="):
        return None
    if_range = request.META.get("HTTP_IF_RANGE")
    if if_range is not None:
        if if_range.startswith(('"', "W/")):
            # A strong comparison: a weak tag never matches.
            if if_range != _etag(served.digest, None):
                return None
        elif served.mtime is None or parse_http_date_safe(if_range) != int(
            served.mtime
        ):
            return None
    spec = header[len("bytes=") :].strip()
    if "," in spec:
        return None  # several ranges: the whole body is an allowed answer
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or (not first and last.isdigit())):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # malformed: ignored
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


class _Slice:
    """The next ``length`` bytes of an open file, for a ranged response."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self.stream = stream
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        wanted = self.remaining if size < 0 else min(size, self.remaining)
        data = self.stream.read(wanted)
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.stream.close()


def _streamed_asynchronously(response: HttpResponseBase) -> HttpResponseBase:
    """
    Under ASGI, stream a file's chunks through an asynchronous iterator that
    reads in a thread: the event loop never blocks on a read, and Django has
    no synchronous iterator to consume.
    """
    if not isinstance(response, FileResponse) or response.file_to_stream is None:
        return response
    source = response.file_to_stream

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            chunk = await asyncio.to_thread(source.read, STREAM_CHUNK_BYTES)
            if not chunk:
                return
            yield chunk

    # The file stays among the response's closers: closed when it is.
    response.streaming_content = chunks()
    return response
