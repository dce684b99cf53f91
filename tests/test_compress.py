"""Content codings: negotiation and the codecs (freshstatic.compress)."""

from __future__ import annotations

import gzip

import brotli
import pytest
import zstandard

from freshstatic import compress

ALL = ("zstd", "br", "gzip")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("gzip, deflate, br", "br"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("br;q=0.5, gzip;q=0.9", "gzip"),
        ("zstd;q=0, br;q=0.1", "br"),
        ("*", "zstd"),
        ("*;q=0.5, zstd;q=0", "br"),
        ("GZIP", "gzip"),
        ("x-gzip", "gzip"),
        ("br;q=bogus, gzip", "gzip"),
        ("deflate", None),
        (" , ;q=1,", None),
    ],
)
def test_negotiation_honours_q_values(accept: str, expected: str | None) -> None:
    assert compress.negotiate(accept, ALL) == expected


def test_ties_go_to_the_servers_preference() -> None:
    assert compress.negotiate("gzip, br", ("gzip", "br")) == "gzip"
    assert compress.negotiate("gzip, br", ("br", "gzip")) == "br"


@pytest.mark.parametrize(
    ("content_type", "size", "expected"),
    [
        ("text/css; charset=utf-8", 10_000, True),
        ("application/javascript; charset=utf-8", 10_000, True),
        ("image/svg+xml", 10_000, True),
        ("application/wasm", 10_000, True),
        ("image/png", 10_000, False),
        ("font/woff2", 10_000, False),
        ("text/css", compress.MIN_BYTES - 1, False),
    ],
)
def test_what_is_worth_compressing(
    content_type: str, size: int, expected: bool
) -> None:
    assert compress.is_compressible(content_type, size) is expected


DATA = b"body { color: red; }\n" * 500


@pytest.mark.parametrize(
    ("coding", "decode"),
    [
        ("gzip", gzip.decompress),
        ("br", brotli.decompress),
        ("zstd", lambda data: zstandard.ZstdDecompressor().decompress(data)),
    ],
)
def test_each_coding_round_trips_and_is_deterministic(coding: str, decode) -> None:  # type: ignore[no-untyped-def]
    level = compress.DEFAULT_LEVELS[coding]
    encoded = compress.compress(DATA, coding, level)
    assert decode(encoded) == DATA
    assert len(encoded) < len(DATA) // 10
    assert compress.compress(DATA, coding, level) == encoded


def test_an_unknown_coding_is_refused() -> None:
    assert compress.compressor("deflate") is None
    assert compress.available(["deflate", "gzip"]) == ("gzip",)
    with pytest.raises(LookupError):
        compress.compress(DATA, "deflate", 1)
