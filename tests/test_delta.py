"""Dictionary-compressed deltas (RFC 9842): the dcz format, the headers, and
what the middleware sends."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from django.test import Client, RequestFactory, override_settings
from django.utils.cache import patch_cache_control

from freshstatic import delta
from freshstatic.delta import DCZ_MAGIC
from freshstatic.storage import FreshStaticFilesStorage
from tests.utils import StaticTree

MIDDLEWARE = ["freshstatic.middleware.FreshStaticMiddleware"]


def script(size: int = 500_000, seed: int = 1) -> bytes:
    """A JavaScript module of about ``size`` bytes, varied like real code."""
    rng = random.Random(seed)
    words = ["const", "let", "return", "function", "value", "item", "index", "=>"]
    lines: list[str] = []
    total = 0
    while total < size:
        line = (
            f"export function f{len(lines)}(a, b) {{ "
            + " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
            + f" return a * {rng.randint(0, 10**6)} + b; }}\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def edited(data: bytes, *line_numbers: int) -> bytes:
    lines = data.decode().splitlines(keepends=True)
    for number in line_numbers:
        lines[number] = f"export const edited{number} = {number};\n"
    return "".join(lines).encode()


def decode(body: bytes, dictionary: bytes) -> bytes:
    """A dcz body decoded as a browser does: the header checked, then zstd
    with the dictionary as raw content."""
    assert body[:8] == DCZ_MAGIC
    assert body[8:40] == hashlib.sha256(dictionary).digest()
    raw = zstandard.ZstdCompressionDict(
        dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )
    frame = body[40:]
    return bytes(zstandard.ZstdDecompressor(dict_data=raw).decompress(frame))


def available(data: bytes) -> str:
    return ":" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


# -- the format -------------------------------------------------------------------


def test_a_delta_decodes_to_the_new_version_against_the_old() -> None:
    old = script()
    new = edited(old, 10, 2000, 4000)
    body = delta.dcz(old, new)
    assert decode(body, old) == new
    assert len(body) < len(new) * 0.02  # the goal: under 2 %
    assert len(body) < len(zstandard.ZstdCompressor(level=19).compress(new)) / 50


def test_the_header_is_a_skippable_frame_plain_zstd_decoders_pass_over() -> None:
    old, new = script(5000), script(5000, seed=2)
    body = delta.dcz(old, new)
    assert body[:8] == bytes((0x5E, 0x2A, 0x4D, 0x18, 0x20, 0x00, 0x00, 0x00))
    assert int.from_bytes(body[:4], "little") == 0x184D2A5E
    assert int.from_bytes(body[4:8], "little") == 32
    assert len(body) > delta.DCZ_HEADER_BYTES


@pytest.mark.parametrize(
    ("dictionary_bytes", "log"),
    [
        (1, 23),
        (500_000, 23),
        (6 * 1024 * 1024, 23),  # 1.25x is 7.5 MiB: 8 MiB still
        (7 * 1024 * 1024, 23),  # 8.75 MiB: 8 MiB, within both limits
        (13 * 1024 * 1024, 24),  # 16.25 MiB: 16 MiB
        (200 * 1024 * 1024, 27),  # capped at 128 MiB
    ],
)
def test_the_window_is_within_what_chromium_and_the_rfc_accept(
    dictionary_bytes: int, log: int
) -> None:
    assert delta.window_log(dictionary_bytes) == log
    # Chromium: clamp(ceil(log2(1.25 * size)), 23, 27); RFC 9842: at most
    # max(8 MiB, 1.25 * size), 128 MiB at most.
    allowed = dictionary_bytes * 5 // 4
    chromium = min(max((allowed - 1).bit_length(), 23), 27)
    assert log <= chromium
    assert 2**log <= max(8 * 1024 * 1024, min(allowed, 128 * 1024 * 1024))


def test_the_frame_window_is_one_chromium_decodes() -> None:
    old = script(200_000)
    new = edited(old, 5)
    parameters = zstandard.get_frame_parameters(delta.dcz(old, new)[40:])
    assert parameters.window_size <= 8 * 1024 * 1024
    # Decoded with Chromium's limit on the window (2**23 for this size).
    raw = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    decompressor = zstandard.ZstdDecompressor(dict_data=raw, max_window_size=2**23)
    assert decompressor.decompress(delta.dcz(old, new)[40:]) == new


# -- the headers ------------------------------------------------------------------


def test_available_dictionary_is_a_byte_sequence_of_a_sha256() -> None:
    digest = hashlib.sha256(b"x").digest()
    assert delta.available_dictionary(available(b"x")) == digest
    assert delta.available_dictionary(f" {available(b'x')} ") == digest
    encoded = base64.b64encode(digest).decode()
    for bad in (
        encoded,  # not a byte sequence
        f":{encoded}",
        f":{base64.b64encode(b'short').decode()}:",
        ":" + "!" * 44 + ":",
        "",
        ":" + base64.b64encode(digest + b"more").decode() + ":",
    ):
        assert delta.available_dictionary(bad) is None


@pytest.mark.parametrize(
    ("accept_encoding", "takes"),
    [
        ("gzip, deflate, br, zstd, dcb, dcz", True),
        ("dcz", True),
        ("gzip, br", False),
        ("dcz;q=0", False),
        ("", False),
    ],
)
def test_dcz_is_sent_only_when_accepted(accept_encoding: str, takes: bool) -> None:
    assert delta.accepts(accept_encoding) is takes


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),
        ({"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_MODE": "cors"}, True),
        ({"HTTP_SEC_FETCH_SITE": "cross-site"}, True),
        (
            {"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "navigate"},
            True,
        ),
        ({"HTTP_SEC_FETCH_SITE": "same-site", "HTTP_SEC_FETCH_MODE": "no-cors"}, False),
        ({"HTTP_SEC_FETCH_SITE": "cross-site", "HTTP_SEC_FETCH_MODE": "cors"}, False),
    ],
)
def test_cross_origin_requests_get_no_delta(
    headers: dict[str, str], allowed: bool
) -> None:
    assert delta.same_origin(headers) is allowed


@pytest.mark.parametrize(
    ("path", "version", "pattern"),
    [
        ("/static/js/app.js", None, "/static/js/app.js"),
        ("/static/js/c++(1).js", None, r"/static/js/c\+\+\(1\).js"),
        ("/static/css/düsseldorf.css", None, "/static/css/d%C3%BCsseldorf.css"),
        ("/static/a b?:{x}.js", None, r"/static/a%20b%3F\:%7Bx%7D.js"),
        ("/static/100%.js", None, "/static/100%25.js"),
        ("/static/css/site.3f2a9c01b7e4.css", "3f2a9c01b7e4", "/static/css/site.*.css"),
        ("/static/LICENSE.3f2a9c01b7e4", "3f2a9c01b7e4", "/static/LICENSE.*"),
        ("/static/css/site.css", "3f2a9c01b7e4", "/static/css/site.css"),
    ],
)
def test_the_match_pattern_covers_the_files_later_versions(
    path: str, version: str | None, pattern: str
) -> None:
    assert delta.match_pattern(path, version) == pattern


def test_use_as_dictionary_is_a_structured_field_dictionary() -> None:
    assert delta.use_as_dictionary("/static/a.js") == 'match="/static/a.js"'
    assert delta.use_as_dictionary(r"/static/c\+\+.js") == (
        r'match="/static/c\\+\\+.js"'
    )


# -- through the middleware -------------------------------------------------------


@pytest.fixture
def served(static_tree: StaticTree, tmp_path: Path) -> Iterator[StaticTree]:
    delta.forget()
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        FRESHSTATIC={"VERSIONS": str(tmp_path / "versions")},
    ):
        yield static_tree
    delta.forget()


def get(path: str, **headers: str) -> Any:
    return Client().get(path, headers=headers)


def visit(tree: StaticTree, name: str, data: bytes) -> str:
    """Write ``name``, fetch its versioned URL (the browser keeps it as a
    dictionary); the URL."""
    tree.write(name, data)
    url = FreshStaticFilesStorage().url(name)
    assert get(url).status_code == 200
    return url


def test_a_versioned_response_offers_itself_as_a_dictionary(served: StaticTree) -> None:
    url = visit(served, "js/app.js", script(10_000))
    response = get(url)
    assert response["Use-As-Dictionary"] == 'match="/static/js/app.js"'
    assert response["Vary"] == "Accept-Encoding, Available-Dictionary"
    unversioned = get("/static/js/app.js")
    assert "Use-As-Dictionary" not in unversioned  # no-cache: never fresh
    served.write("img/a.png", b"\x89PNG" + b"\0" * 10_000)
    image = get(FreshStaticFilesStorage().url("img/a.png"))
    assert "Use-As-Dictionary" not in image
    served.write("js/tiny.js", b"let a = 1;\n" * 10)
    assert "Use-As-Dictionary" not in get(FreshStaticFilesStorage().url("js/tiny.js"))


def test_a_returning_browser_gets_the_new_version_as_a_delta(
    served: StaticTree,
) -> None:
    old = script()
    visit(served, "js/app.js", old)
    new = edited(old, 10, 2000, 4000)
    served.write("js/app.js", new)
    url = FreshStaticFilesStorage().url("js/app.js")
    response = get(
        url,
        accept_encoding="gzip, deflate, br, zstd, dcb, dcz",
        available_dictionary=available(old),
        sec_fetch_site="same-origin",
        sec_fetch_mode="cors",
    )
    assert response["Content-Encoding"] == "dcz"
    assert decode(response.content, old) == new
    assert len(response.content) < len(new) * 0.02
    assert response["Content-Length"] == str(len(response.content))
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["Vary"] == "Accept-Encoding, Available-Dictionary"
    digest = hashlib.sha256(new).hexdigest()
    dictionary = hashlib.sha256(old).hexdigest()
    assert response["ETag"] == f'"{digest[:32]}-dcz-{dictionary[:16]}"'
    assert response["Use-As-Dictionary"] == 'match="/static/js/app.js"'
    again = get(
        url,
        accept_encoding="dcz",
        available_dictionary=available(old),
        if_none_match=response["ETag"],
    )
    assert again.status_code == 304


def test_each_delta_is_computed_once(
    served: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = script(50_000)
    visit(served, "js/app.js", old)
    served.write("js/app.js", edited(old, 3))
    url = FreshStaticFilesStorage().url("js/app.js")
    computed: list[int] = []
    dcz = delta.dcz

    def counting(dictionary: bytes, data: bytes, level: int = 19) -> bytes:
        computed.append(len(data))
        return dcz(dictionary, data, level)

    monkeypatch.setattr(delta, "dcz", counting)
    bodies = {
        get(url, accept_encoding="dcz", available_dictionary=available(old)).content
        for _ in range(3)
    }
    assert len(bodies) == 1
    assert computed == [len(edited(old, 3))]


@pytest.mark.parametrize(
    "headers",
    [
        {"accept_encoding": "gzip, br, zstd"},  # no dcz
        {"accept_encoding": "dcz", "available_dictionary": available(b"unknown")},
        {"accept_encoding": "dcz", "available_dictionary": "garbage"},
        {
            "accept_encoding": "dcz",
            "sec_fetch_site": "cross-site",
            "sec_fetch_mode": "no-cors",
        },
        {"accept_encoding": "dcz", "range": "bytes=0-9"},
    ],
)
def test_otherwise_the_usual_coding_is_sent(
    served: StaticTree, headers: dict[str, str]
) -> None:
    old = script(20_000)
    visit(served, "js/app.js", old)
    served.write("js/app.js", edited(old, 1))
    headers.setdefault("available_dictionary", available(old))
    response = get(FreshStaticFilesStorage().url("js/app.js"), **headers)
    assert response.get("Content-Encoding") != "dcz"


class FilenameStorage(FreshStaticFilesStorage):
    """version_in="filename" without OPTIONS (which Django 4.2 drops under
    override_settings)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(version_in="filename", **options)


def test_with_a_version_in_the_file_name(served: StaticTree) -> None:
    old = script(20_000)
    served.write("js/app.js", old)
    with override_settings(
        STORAGES={"staticfiles": {"BACKEND": f"{__name__}.FilenameStorage"}}
    ):
        url = FreshStaticFilesStorage(version_in="filename").url("js/app.js")
        assert "?" not in url
        first = get(url)
        assert first["Use-As-Dictionary"] == 'match="/static/js/app.*.js"'
        new = edited(old, 7)
        served.write("js/app.js", new)
        response = get(
            FreshStaticFilesStorage(version_in="filename").url("js/app.js"),
            accept_encoding="dcz",
            available_dictionary=available(old),
        )
    assert response["Content-Encoding"] == "dcz"
    assert decode(response.content, old) == new


@pytest.mark.parametrize(
    ("setting", "static_url", "on"),
    [
        ({}, "/static/", True),
        ({}, "https://cdn.example.com/static/", False),
        ({"DELTAS": True}, "https://cdn.example.com/static/", True),
        ({"DELTAS": False}, "/static/", False),
    ],
)
def test_deltas_are_off_behind_a_cdn_unless_asked_for(
    static_tree: StaticTree,
    tmp_path: Path,
    setting: dict[str, object],
    static_url: str,
    on: bool,
) -> None:
    versions_setting = {"PATH": str(tmp_path / "versions"), **setting}
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        STATIC_URL=static_url,
        FRESHSTATIC={"VERSIONS": versions_setting},
    ):
        assert delta.enabled() is on
        url = visit(static_tree, "js/app.js", script(10_000))
        response = get("/static/" + url.split("/static/", 1)[1])
        assert ("Use-As-Dictionary" in response) is on


def test_advertise_leaves_a_response_that_is_not_immutable_alone(
    tmp_path: Path,
) -> None:
    from django.http import HttpResponse

    request = RequestFactory().get("/static/js/app.js")
    with override_settings(FRESHSTATIC={"VERSIONS": str(tmp_path)}):
        response = HttpResponse(b"x" * 5000)
        patch_cache_control(response, no_cache=True)
        advertised = delta.advertise(
            request,
            response,
            compressible=True,
            size=5000,
            version=None,
            version_in="query",
        )
        assert "Use-As-Dictionary" not in advertised
        assert advertised["Vary"] == "Available-Dictionary"
