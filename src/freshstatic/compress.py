"""
Content codings: which bodies are worth compressing, which coding a client
takes (``Accept-Encoding`` with its q-values), and the codecs themselves.

Pure bytes in, bytes out; what is kept, and for how long, is the caller's.
zstd comes from Python 3.14's ``compression.zstd`` or the ``zstandard``
package, br from ``brotli``, gzip from the standard library.
"""

from __future__ import annotations

import gzip
import importlib
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from types import ModuleType

# Codings in the order they are preferred when a client takes several
# equally: the smallest output first (at these levels, br is a few per cent
# smaller than zstd on text).
CODINGS = ("br", "zstd", "gzip")
# Bodies smaller than this gain too little to be worth a coding.
MIN_BYTES = 256
# Media types that compress well (text/* compresses too).
COMPRESSIBLE_TYPES = frozenset(
    {
        "application/javascript",
        "text/javascript",
        "application/json",
        "application/manifest+json",
        "application/ld+json",
        "application/xml",
        "application/xhtml+xml",
        "application/wasm",
        "application/x-javascript",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "font/ttf",
        "font/otf",
        "application/vnd.ms-fontobject",
    }
)
# Levels used unless FRESHSTATIC["COMPRESSION_LEVELS"] says otherwise: each
# version is compressed once, so the levels can be high.
DEFAULT_LEVELS = {"zstd": 19, "br": 11, "gzip": 9}
LEVEL_RANGES = {"zstd": (1, 22), "br": (0, 11), "gzip": (1, 9)}
# The package that provides each coding, for messages.
PACKAGES = {"zstd": "zstandard", "br": "brotli", "gzip": "the standard library"}


def is_compressible(content_type: str, size: int) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return size >= MIN_BYTES and (
        media_type.startswith("text/") or media_type in COMPRESSIBLE_TYPES
    )


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@cache
def _zstd_compressor() -> Callable[[bytes, int], bytes] | None:
    stdlib = _import("compression.zstd")  # Python 3.14+
    if stdlib is not None:
        return lambda data, level: bytes(stdlib.compress(data, level=level))
    package = _import("zstandard")
    if package is not None:
        return lambda data, level: bytes(
            package.ZstdCompressor(level=level).compress(data)
        )
    return None


@cache
def _brotli_compressor() -> Callable[[bytes, int], bytes] | None:
    package = _import("brotli")
    if package is None:
        return None
    return lambda data, level: bytes(package.compress(data, quality=level))


def _gzip(data: bytes, level: int) -> bytes:
    # mtime=0: the same bytes in, the same bytes out (one ETag per coding).
    return gzip.compress(data, compresslevel=level, mtime=0)


def compressor(coding: str) -> Callable[[bytes, int], bytes] | None:
    """The function that compresses with ``coding``, or None if unavailable."""
    if coding == "gzip":
        return _gzip
    if coding == "br":
        return _brotli_compressor()
    if coding == "zstd":
        return _zstd_compressor()
    return None


def available(codings: Iterable[str]) -> tuple[str, ...]:
    return tuple(coding for coding in codings if compressor(coding) is not None)


def compress(data: bytes, coding: str, level: int) -> bytes:
    function = compressor(coding)
    if function is None:
        raise LookupError(f"{coding} needs {PACKAGES.get(coding, coding)}")
    return function(data, level)


def negotiate(accept_encoding: str, offered: Iterable[str]) -> str | None:
    """
    The coding to send for ``Accept-Encoding``, among ``offered`` (in order
    of preference), or None for the identity. The client's q-values decide;
    ties go to the order of ``offered``. ``*`` stands for any coding not
    named; ``q=0`` refuses one.
    """
    if len(accept_encoding) > MAX_ACCEPT_ENCODING_CACHED:
        return _negotiate(accept_encoding, tuple(offered))
    return _negotiate_cached(accept_encoding, tuple(offered))


# Accept-Encoding values are few in practice: each is parsed once. Longer
# ones (never sent by a browser) are parsed every time, so that what is kept
# stays small whatever clients send.
MAX_ACCEPT_ENCODING_CACHED = 256


def _negotiate(accept_encoding: str, offered: tuple[str, ...]) -> str | None:
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        coding = name.strip().lower()
        if not coding:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if coding == "x-gzip":
            coding = "gzip"
        weights[coding] = max(quality, weights.get(coding, 0.0))
    best: str | None = None
    best_quality = 0.0
    for offer in offered:
        quality = weights.get(offer, weights.get("*", 0.0))
        if quality > best_quality:
            best, best_quality = offer, quality
    return best


_negotiate_cached = lru_cache(maxsize=128)(_negotiate)
