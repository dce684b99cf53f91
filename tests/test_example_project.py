"""The example project, served by a real runserver process, with no collectstatic."""

from __future__ import annotations

import hashlib
import re
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(params=["1", "0"], ids=["debug", "no-debug"])
def runserver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = ServerProcess(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        tmp_path / "runserver.log",
        cwd=EXAMPLE,
        env=subprocess_env(DJANGO_DEBUG=request.param),
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: fetch(base), timeout=60, message="runserver to answer")
        yield base
    finally:
        server.stop()


@pytest.mark.subprocess
def test_page_urls_carry_the_hash_of_the_bytes_served(runserver: str) -> None:
    html = fetch(runserver)
    assert html is not None
    found = page_hashes(html)
    # In DEBUG, the live page's script is injected too.
    found.pop("freshstatic/live.js", None)
    assert set(found) == {"css/site.css", "js/app.js", "img/logo.svg"}
    for name in ("js/app.js", "img/logo.svg"):
        on_disk = (EXAMPLE / "static" / name).read_bytes()
        assert found[name] == hashlib.sha256(on_disk).hexdigest()[:12]
    # The stylesheet is served with its references busted: its hash is the
    # hash of those bytes, which name the image and the font by their hash.
    css = _get(f"{runserver}static/css/site.css?v={found['css/site.css']}")
    assert found["css/site.css"] == hashlib.sha256(css).hexdigest()[:12]
    pattern = hashlib.sha256(
        (EXAMPLE / "static/img/pattern.svg").read_bytes()
    ).hexdigest()
    font = hashlib.sha256(
        (EXAMPLE / "static/fonts/fresh-icons.woff").read_bytes()
    ).hexdigest()
    assert f'url("../img/pattern.svg?v={pattern[:12]}")'.encode() in css
    assert f'url("../fonts/fresh-icons.woff?v={font[:12]}")'.encode() in css
    assert not (EXAMPLE / "staticfiles").exists()  # no collectstatic was run


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url) as response:  # noqa: S310 (loopback)
        return bytes(response.read())


@pytest.mark.subprocess
def test_debug_runserver_lets_the_middleware_serve(runserver: str) -> None:
    html = fetch(runserver)
    assert html is not None
    css_url = f"/static/css/site.css?v={page_hashes(html)['css/site.css']}"
    with urllib.request.urlopen(runserver.rstrip("/") + css_url) as response:  # noqa: S310
        assert (
            response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        )
        # Rewritten by the middleware, not served as is by Django's handler.
        assert b"pattern.svg?v=" in response.read()


@pytest.mark.subprocess
def test_runserver_autostarts_one_watcher_and_the_next_page_is_fresh(
    tmp_path: Path,
) -> None:
    static = copy_example_static(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = ServerProcess(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
        tmp_path / "runserver.log",
        cwd=EXAMPLE,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings_example",
            EXAMPLE_STATIC_DIR=str(static),
        ),
    )
    try:
        html = wait_for(lambda: fetch(base), timeout=60, message="runserver to answer")
        before = page_hashes(html)["css/site.css"]
        css = static / "css" / "site.css"
        css.write_text(css.read_text().replace("#1f6feb", "#d1242f"))
        wait_for(
            lambda: (
                page_hashes(fetch(base) or "").get("css/site.css") not in (None, before)
            ),
            message="the next page to carry a new hash",
        )
        after = page_hashes(fetch(base) or "")["css/site.css"]
        body = _get(f"{base}static/css/site.css?v={after}")
        assert b"#d1242f" in body
        assert hashlib.sha256(body).hexdigest()[:12] == after
        # Exactly one watcher, in the child that serves, not in the
        # autoreloader's parent.
        starts = re.findall(
            r"Watching \d+ static folders .* in process (\d+)\.", server.output()
        )
        assert len(starts) == 1, server.output()
        assert int(starts[0]) != server.process.pid
    finally:
        server.stop()
