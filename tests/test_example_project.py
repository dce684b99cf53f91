"""The example project, served by a real runserver process, with no collectstatic."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, free_port, subprocess_env, wait_for

EXAMPLE = ROOT / "example_project"


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return str(response.read().decode())
    except OSError:
        return None


@pytest.fixture(params=["1", "0"], ids=["debug", "no-debug"])
def runserver(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=EXAMPLE,
        env=subprocess_env(DJANGO_DEBUG=request.param),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_for(lambda: fetch(base), timeout=60, message="runserver to answer")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.subprocess
def test_page_urls_carry_the_hash_of_the_file_on_disk(runserver: str) -> None:
    html = fetch(runserver)
    assert html is not None
    found = dict(re.findall(r'(?:href|src)="/static/([^"?]+)\?v=([0-9a-f]+)"', html))
    assert set(found) == {"css/site.css", "js/app.js", "img/logo.svg"}
    for name, digest in found.items():
        on_disk = (EXAMPLE / "static" / name).read_bytes()
        assert digest == hashlib.sha256(on_disk).hexdigest()[:12]
    assert not (EXAMPLE / "staticfiles").exists()  # no collectstatic was run
