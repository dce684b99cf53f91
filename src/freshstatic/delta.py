"""
Updates as deltas: Compression Dictionary Transport (RFC 9842).

A versioned response of a compressible file says it may serve as a
dictionary for the file's later versions (``Use-As-Dictionary`` with a
``match`` pattern, RFC 9842 §2.1). A browser that kept it asks for a later
version with ``Available-Dictionary`` (the SHA-256 of the version it has)
and ``dcz`` in ``Accept-Encoding``; if the version store (freshstatic.versions)
keeps bytes with that hash, the new version goes out as a Zstandard frame
compressed against them (``Content-Encoding: dcz``, §5): a few hundred bytes
for a few edited lines of a large script.

Each delta is computed once per (old, new) pair and kept in memory, bounded
in bytes. ``dcb`` (Brotli with a dictionary) is not offered: the ``brotli``
package's Python binding takes no custom dictionary.

Where the RFC leaves room, this follows Chromium, the one browser shipping
it: the zstd window (§5) is at most what Chromium's decoder accepts, and the
match pattern is the file's exact path (a URL pattern's search component is
a wildcard when the pattern names a path), so ``?v=`` changes stay covered.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_vary_headers

from freshstatic import compress, versions
from freshstatic.conf import conf
from freshstatic.served import BoundedCache, Served

# RFC 9842 §5: a Zstandard skippable frame (magic 0x184D2A5E, little-endian)
# of 32 bytes, which are the SHA-256 of the dictionary.
DCZ_MAGIC = bytes((0x5E, 0x2A, 0x4D, 0x18, 0x20, 0x00, 0x00, 0x00))
DCZ_HEADER_BYTES = len(DCZ_MAGIC) + 32
DCZ = "dcz"
# Smaller files are not offered as dictionaries: the headers would cost
# about what a delta saves.
DICTIONARY_MIN_BYTES = 2048
# What the deltas kept in this process may take; least recently used out.
DELTAS_MAX_BYTES = 16 * 1024 * 1024
# A file larger than the smallest window every client must accept (8 MiB)
# would need the dictionary beyond the window: no delta.
DELTA_INPUT_MAX_BYTES = 8 * 1024 * 1024
# The zstd window: RFC 9842 §5 asks clients to accept 8 MiB or 1.25 times
# the dictionary, whichever is greater, up to 128 MiB; Chromium sets its
# decoder's limit to clamp(ceil(log2(1.25 * dictionary)), 23, 27). The window
# used is the largest power of two within both: clamp(floor(log2(1.25 *
# dictionary)), 23, 27).
WINDOW_LOG_MIN = 23
WINDOW_LOG_MAX = 27
# How long a request waits for another one computing the same delta.
BUILD_WAIT_SECONDS = 120.0
_ENTRY_OVERHEAD_BYTES = 200
# Characters a URL pattern reads as syntax (the URL Pattern standard's
# "escape a pattern string"); each is escaped with a backslash.
_PATTERN_SYNTAX = frozenset("+*?:{}()\\")
# What a browser leaves as it is in a path (the WHATWG URL path
# percent-encode set's complement, less "%", which a name may hold).
_PATH_SAFE = "!$&'()*+,-./:;=@[]^_|~"


@dataclass(frozen=True)
class Delta:
    """A response body compressed against a dictionary the client has."""

    body: bytes
    # For the ETag: one per coding and dictionary ("dcz-<hash>").
    tag: str
    coding: str = DCZ


def window_log(dictionary_size: int) -> int:
    """The zstd window (log2) for a delta against ``dictionary_size`` bytes."""
    allowed = max(dictionary_size * 5 // 4, 1)
    return min(max(allowed.bit_length() - 1, WINDOW_LOG_MIN), WINDOW_LOG_MAX)


@functools.cache
def _zstd_with_dictionary() -> Callable[[bytes, bytes, int, int], bytes] | None:
    """(dictionary, data, level, window log) -> a zstd frame, or None."""
    try:
        import zstandard
    except ImportError:  # pragma: no cover - the test environments have it
        return None

    def compress_with(dictionary: bytes, data: bytes, level: int, log: int) -> bytes:
        raw = zstandard.ZstdCompressionDict(
            dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT
        )
        parameters = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(data), dict_size=len(dictionary), window_log=log
        )
        compressor = zstandard.ZstdCompressor(
            dict_data=raw, compression_params=parameters
        )
        return bytes(compressor.compress(data))

    return compress_with


def available() -> bool:
    """Whether deltas can be made here (the ``zstandard`` package)."""
    return _zstd_with_dictionary() is not None


def dcz(dictionary: bytes, data: bytes, level: int = 19) -> bytes:
    """
    ``data`` as a Dictionary-Compressed Zstandard stream (RFC 9842 §5): the
    40-byte header naming ``dictionary`` by its SHA-256, then a zstd frame
    compressed with ``dictionary`` as raw content, in a window every
    client accepts.
    """
    compress_with = _zstd_with_dictionary()
    if compress_with is None:  # pragma: no cover - the test environments have it
        raise LookupError("dcz needs the zstandard package")
    frame = compress_with(dictionary, data, level, window_log(len(dictionary)))
    return DCZ_MAGIC + hashlib.sha256(dictionary).digest() + frame


def available_dictionary(value: str) -> bytes | None:
    """
    The SHA-256 an ``Available-Dictionary`` header names (a Structured Field
    Byte Sequence, ``:<base64>:``), or None if it names none.
    """
    value = value.strip()
    if len(value) != 46 or value[0] != ":" or value[-1] != ":":
        return None
    try:
        digest = base64.b64decode(value[1:-1], validate=True)
    except ValueError:
        return None
    return digest if len(digest) == 32 else None


def accepts(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` takes dcz."""
    return compress.negotiate(accept_encoding, (DCZ,)) == DCZ


def same_origin(meta: dict[str, Any]) -> bool:
    """
    Whether the request may get a dictionary-compressed response (RFC 9842
    §8.4, "Server Responsibility"): not for a cross-origin request, since
    these responses carry no Access-Control-Allow-Origin.
    """
    site = meta.get("HTTP_SEC_FETCH_SITE")
    if site is None or site == "same-origin":
        return True
    mode = meta.get("HTTP_SEC_FETCH_MODE")
    return mode is None or mode in ("navigate", "same-origin")


def enabled() -> bool:
    """Whether deltas are on: the version store is, and ``DELTAS`` ("auto":
    when STATIC_URL has no host, since a CDN may cache a delta for clients
    without its dictionary)."""
    setting = conf.VERSIONS
    if setting is None or versions.store() is None or not available():
        return False
    if setting.deltas == "auto":
        return not _has_host(settings.STATIC_URL or "/")
    return bool(setting.deltas)


@functools.lru_cache(maxsize=8)
def _has_host(url: str) -> bool:
    return bool(urlsplit(url).netloc)


def match_pattern(path: str, version: str | None = None) -> str:
    """
    The URL pattern (RFC 9842 §2.1.1) matching the request path ``path``
    (decoded, as Django gives it) and the file's later versions: the path
    itself, which a pattern matches whatever the query (``?v=``); with
    ``version`` in the file's name (``site.<version>.css``), any version
    there (``site.*.css``).
    """
    encoded = quote(path, safe=_PATH_SAFE)
    if version:
        folder, slash, filename = encoded.rpartition("/")
        stem, dot, extension = filename.rpartition(f".{version}")
        if dot:
            return _escape(f"{folder}{slash}{stem}") + ".*" + _escape(extension)
    return _escape(encoded)


def _escape(text: str) -> str:
    return "".join(f"\\{char}" if char in _PATTERN_SYNTAX else char for char in text)


def use_as_dictionary(pattern: str) -> str:
    """The ``Use-As-Dictionary`` value for ``pattern`` (a Structured Field
    Dictionary whose ``match`` is a String)."""
    escaped = pattern.replace("\\", "\\\\").replace('"', '\\"')
    return f'match="{escaped}"'


# -- the deltas kept --------------------------------------------------------------


def _cost(body: bytes) -> int:
    return len(body) + _ENTRY_OVERHEAD_BYTES


_deltas: BoundedCache[bytes] = BoundedCache(DELTAS_MAX_BYTES, _cost)
_building: dict[tuple[object, ...], threading.Event] = {}
_building_lock = threading.Lock()


def forget() -> None:
    """Drop every delta kept in this process."""
    _deltas.clear()


def _once(key: tuple[object, ...], build: Callable[[], bytes | None]) -> bytes | None:
    """``build()`` once for ``key``, however many threads ask at once."""
    while True:
        kept = _deltas.get(key)
        if kept is not None:
            return kept
        with _building_lock:
            event = _building.get(key)
            owner = event is None
            if event is None:
                event = _building[key] = threading.Event()
        if owner:
            try:
                return build()
            finally:
                with _building_lock:
                    _building.pop(key, None)
                event.set()
        if not event.wait(BUILD_WAIT_SECONDS):
            return None


def negotiate(request: HttpRequest, served: Served) -> Delta | None:
    """
    The body to send as a delta for ``request``, or None: it takes dcz,
    names a dictionary the store keeps, is not cross-origin, and the body
    is held in memory. Computed once per (dictionary, version).
    """
    meta = request.META
    if not served.in_memory or served.size > DELTA_INPUT_MAX_BYTES:
        return None
    if "HTTP_AVAILABLE_DICTIONARY" not in meta or not enabled():
        return None
    sha256 = available_dictionary(str(meta["HTTP_AVAILABLE_DICTIONARY"]))
    if sha256 is None or not accepts(str(meta.get("HTTP_ACCEPT_ENCODING", ""))):
        return None
    if not same_origin(meta):
        return None
    store = versions.store()
    if store is None:  # pragma: no cover - enabled() said it is there
        return None
    dictionary_name = sha256.hex()
    level = conf.COMPRESSION_LEVELS.get("zstd", compress.DEFAULT_LEVELS["zstd"])
    tag = f"{DCZ}-{dictionary_name[:16]}"
    key = (dictionary_name, served.algorithm, served.digest, level)
    kept = _deltas.get(key)
    if kept is not None:
        return Delta(kept, tag)
    if not store.has(dictionary_name):
        return None
    body = served.read()  # the digest may change: the file changed meanwhile
    key = (dictionary_name, served.algorithm, served.digest, level)

    def build() -> bytes | None:
        dictionary = store.get(dictionary_name)
        if dictionary is None:
            return None
        encoded = dcz(dictionary, body, level)
        if len(encoded) >= len(body):
            return None  # no gain: unrelated, or tiny
        _deltas.put(key, encoded)
        return encoded

    encoded = _once(key, build)
    return None if encoded is None else Delta(encoded, tag)


def advertise(
    request: HttpRequest,
    response: HttpResponseBase,
    *,
    compressible: bool,
    size: int,
    version: str | None,
    version_in: str,
) -> HttpResponseBase:
    """
    Mark ``response`` for deltas: ``Vary: Available-Dictionary`` beside
    ``Accept-Encoding``, and on a versioned (immutable) response of a
    compressible file of some size, ``Use-As-Dictionary`` with a pattern
    covering the file's later versions.
    """
    if not compressible or not enabled():
        return response
    patch_vary_headers(response, ("Available-Dictionary",))
    immutable = "immutable" in response.get("Cache-Control", "")
    if (
        immutable
        and size >= DICTIONARY_MIN_BYTES
        and response.status_code
        in (
            200,
            304,
        )
    ):
        in_name = version if version_in == "filename" else None
        response["Use-As-Dictionary"] = use_as_dictionary(
            match_pattern(request.path, in_name)
        )
    return response
