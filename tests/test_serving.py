"""
The header matrix, compression, ranges and path confinement, over real HTTP
to a real gunicorn (WSGI) and a real uvicorn (ASGI).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import brotli
import pytest
import zstandard

from tests.utils import (
    EXAMPLE,
    ServerProcess,
    copy_example_static,
    fetch,
    free_port,
    page_hashes,
    subprocess_env,
    wait_for,
)

IMMUTABLE = "public, max-age=31536000, immutable"
SECRET = b"TOP SECRET settings"


class Site(NamedTuple):
    port: int
    static: Path
    server: ServerProcess


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def request(site: Site, method: str, path: str, **headers: str) -> Reply:
    """Send ``path`` exactly as given (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name.replace("_", "-"), value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


# A script larger than what is served from memory: streamed from the file.
LARGE_SCRIPT = b"".join(b"export const n%d = %d;\n" % (i, i) for i in range(200_000))
SERVERS = {
    "gunicorn": ["-m", "gunicorn", "--workers", "2", "--bind", "127.0.0.1:{port}"],
    "uvicorn": ["-m", "uvicorn", "--workers", "2", "--port", "{port}"],
}
APPLICATIONS = {"gunicorn": "example.wsgi", "uvicorn": "example.asgi:application"}


@pytest.fixture(scope="module", params=list(SERVERS))
def site(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Site]:
    kind = request.param
    tmp = tmp_path_factory.mktemp(f"serving-{kind}")
    static = copy_example_static(tmp)
    (static / "js" / "large.js").write_bytes(LARGE_SCRIPT)
    (tmp / "settings.py").write_bytes(SECRET)
    os.symlink(tmp / "settings.py", static / "css" / "escape.css")
    port = free_port()
    server = ServerProcess(
        [
            sys.executable,
            *(part.format(port=port) for part in SERVERS[kind]),
            APPLICATIONS[kind],
        ],
        tmp / f"{kind}.log",
        cwd=EXAMPLE,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings_example",
            EXAMPLE_STATIC_DIR=str(static),
            DJANGO_DEBUG="0",
        ),
    )
    try:
        wait_for(lambda: fetch(f"http://127.0.0.1:{port}/"), timeout=60, message=kind)
        yield Site(port, static, server)
    finally:
        server.stop()


def page_url(site: Site, name: str) -> str:
    html = fetch(f"http://127.0.0.1:{site.port}/") or ""
    return f"/static/{name}?v={page_hashes(html)[name]}"


@pytest.mark.subprocess
def test_matching_v_is_immutable(site: Site) -> None:
    reply = request(site, "GET", page_url(site, "img/logo.svg"))
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == IMMUTABLE
    assert reply.body == (site.static / "img/logo.svg").read_bytes()
    assert reply.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert reply.headers["Content-Length"] == str(len(reply.body))


@pytest.mark.subprocess
@pytest.mark.parametrize("query", ["", "?v=0123456789ab", "?v="])
def test_stale_or_missing_v_is_no_cache(site: Site, query: str) -> None:
    reply = request(site, "GET", f"/static/js/app.js{query}")
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-cache"
    digest = hashlib.sha256((site.static / "js/app.js").read_bytes()).hexdigest()
    assert reply.headers["ETag"] == f'"{digest[:32]}"'
    assert "Last-Modified" in reply.headers


@pytest.mark.subprocess
def test_conditional_requests(site: Site) -> None:
    first = request(site, "GET", "/static/js/app.js")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert request(site, "GET", "/static/js/app.js", If_None_Match=etag).status == 304
    assert (
        request(site, "GET", "/static/js/app.js", If_Modified_Since=modified).status
        == 304
    )
    changed = request(site, "GET", "/static/js/app.js", If_None_Match='"nope"')
    assert changed.status == 200
    immutable = request(site, "GET", page_url(site, "js/app.js"), If_None_Match=etag)
    assert immutable.status == 304
    assert immutable.headers["Cache-Control"] == IMMUTABLE


@pytest.mark.subprocess
def test_head(site: Site) -> None:
    url = page_url(site, "css/site.css")
    get = request(site, "GET", url)
    head = request(site, "HEAD", url)
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))
    assert head.headers["Cache-Control"] == IMMUTABLE
    assert head.headers["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.subprocess
def test_an_edit_is_never_served_under_the_old_immutable_url(site: Site) -> None:
    name = "js/app.js"
    url = page_url(site, name)
    path = site.static / name
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n// edited, longer")
        reply = request(site, "GET", url)
        # The new bytes, their real length, and no promise of immutability.
        assert reply.body == path.read_bytes()
        assert reply.headers["Content-Length"] == str(len(reply.body))
        assert reply.headers["Cache-Control"] == "no-cache"
    finally:
        path.write_bytes(original)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "path",
    [
        "/static/../example/settings.py",
        "/static/%2e%2e/%2e%2e/settings.py",
        "/static/%2E%2E%2F%2E%2E%2Fsettings.py",
        "/static/..%2f..%2fsettings.py",
        "/static/%252e%252e/%252e%252e/settings.py",
        "/static/css/%00.css",
        "/static/..%5c..%5csettings.py",
        "/static/%2Fetc%2Fpasswd",
        "/static//etc/passwd",
        "/static/css/escape.css",
        "/static/css/",
        "/static/nope.css",
    ],
)
def test_bad_paths_are_404_and_never_leak(site: Site, path: str) -> None:
    reply = request(site, "GET", path)
    assert reply.status in (400, 404)
    assert SECRET not in reply.body
    assert b"root:" not in reply.body


@pytest.mark.subprocess
def test_other_methods_are_405(site: Site) -> None:
    reply = request(site, "POST", "/static/js/app.js")
    assert reply.status == 405


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("coding", "decode"),
    [
        ("gzip", gzip.decompress),
        ("br", brotli.decompress),
        ("zstd", lambda data: zstandard.ZstdDecompressor().decompress(data)),
    ],
)
def test_each_coding_decodes_to_the_file(site: Site, coding: str, decode) -> None:  # type: ignore[no-untyped-def]
    url = page_url(site, "css/site.css")  # rewritten: its references versioned
    identity = request(site, "GET", url).body
    reply = request(site, "GET", url, Accept_Encoding=f"{coding}, identity;q=0.5")
    assert reply.headers["Content-Encoding"] == coding
    assert reply.headers["Vary"] == "Accept-Encoding"
    assert reply.headers["Cache-Control"] == IMMUTABLE
    assert decode(reply.body) == identity
    assert b"?v=" in identity
    large = request(site, "GET", "/static/js/large.js", Accept_Encoding=coding)
    assert large.status == 200  # compressed once ready, off the request path
    body = decode(large.body) if "Content-Encoding" in large.headers else large.body
    assert body == LARGE_SCRIPT


@pytest.mark.subprocess
def test_a_large_file_streams_whole_and_in_ranges(site: Site) -> None:
    whole = request(site, "GET", "/static/js/large.js")
    assert whole.status == 200
    assert whole.body == LARGE_SCRIPT
    assert whole.headers["Content-Length"] == str(len(LARGE_SCRIPT))
    part = request(site, "GET", "/static/js/large.js", Range="bytes=1000-1999")
    assert part.status == 206
    assert part.body == LARGE_SCRIPT[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(LARGE_SCRIPT)}"
    tail = request(site, "GET", "/static/js/large.js", Range="bytes=-10")
    assert tail.body == LARGE_SCRIPT[-10:]
    beyond = request(site, "GET", "/static/js/large.js", Range="bytes=99999999-")
    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(LARGE_SCRIPT)}"
    # Nothing warned of a synchronous iterator under ASGI.
    assert "synchronous iterators" not in site.server.output()


@pytest.mark.subprocess
def test_static_responses_carry_the_security_headers(site: Site) -> None:
    reply = request(site, "GET", page_url(site, "js/app.js"))
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "same-origin"
    assert reply.headers["Cross-Origin-Opener-Policy"] == "same-origin"
