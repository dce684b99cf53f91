"""The header matrix and path confinement, over real HTTP to a real gunicorn."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import (
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("serving")
    static = copy_example_static(tmp)
    (tmp / "settings.py").write_bytes(SECRET)
    os.symlink(tmp / "settings.py", static / "css" / "escape.css")
    port = free_port()
    server = ServerProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "example.wsgi",
        ],
        tmp / "gunicorn.log",
        cwd=EXAMPLE,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings_example",
            EXAMPLE_STATIC_DIR=str(static),
            DJANGO_DEBUG="0",
        ),
    )
    try:
        wait_for(
            lambda: fetch(f"http://127.0.0.1:{port}/"), timeout=60, message="gunicorn"
        )
        yield Site(port, static)
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
