"""
Trying hard to break the promises: fuzzed names and paths, big and awkward
files, a watcher killed mid-batch, Redis killed under load.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pytest
from django.core.cache import CacheKeyWarning
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshstatic import locations
from freshstatic.storage import FreshStaticFilesStorage
from freshstatic.watcher import Watcher
from tests.utils import (
    EXAMPLE,
    ROOT,
    RedisServer,
    ServerProcess,
    StaticTree,
    fetch,
    free_port,
    gunicorn,
    page_hashes,
    production_example,
    sha,
    subprocess_env,
    wait_for,
)

SECRET = b"PRIVATE KEY do not serve"
EXAMPLES = int(os.environ.get("FRESHSTATIC_FUZZ", "300"))

segments = st.sampled_from(
    [
        "..", ".", "", "css", "site.css", "a", "%2e%2e", "%252e%252e", "..%2f",
        "%2F", "\\", "..\\..", "\x00", "%00", "/", "C:", "~", "secret.txt",
        "link.css", "ü", "ñ é", " ", "\r\n", "?", "#", "a" * 300, "\udcff",
    ]
)  # fmt: skip
names = st.one_of(
    st.lists(segments, max_size=8).map("/".join),
    st.text(max_size=60),
    st.just("x" * 10_000),
    st.just("/".join([".."] * 40) + "/etc/passwd"),
)


@pytest.fixture
def hostile_tree(static_tree: StaticTree) -> Iterator[StaticTree]:
    static_tree.write("css/site.css", b"body{}")
    static_tree.write("a", b"a")
    secret = static_tree.base / "secret.txt"
    secret.write_bytes(SECRET)
    os.symlink(secret, static_tree.plain / "link.css")
    os.symlink(secret, static_tree.plain / "css" / "secret.txt")
    with override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"]):
        yield static_tree


def outside(opened: list[str], tree: StaticTree) -> list[str]:
    secret = str(tree.base / "secret.txt")
    return [
        path
        for path in opened
        if os.path.realpath(path) in (secret, "/etc/passwd", "/etc/shadow")
    ]


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(name=names)
def test_url_never_raises_never_reads_outside_and_keys_stay_safe(
    hostile_tree: StaticTree, opened_paths: list[str], name: str
) -> None:
    opened_paths.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        url = FreshStaticFilesStorage().url(name)
    assert isinstance(url, str)
    assert "\r" not in url
    assert "\n" not in url  # nothing to inject into a header or a page
    assert outside(opened_paths, hostile_tree) == []


@FUZZ
@given(name=names)
def test_middleware_never_500_never_leaks(
    hostile_tree: StaticTree, opened_paths: list[str], name: str
) -> None:
    opened_paths.clear()
    path = "/static/" + quote(name.encode("utf-8", "surrogatepass"), safe="/%")
    response = Client().get(path)
    assert response.status_code in (200, 400, 404)
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    assert SECRET not in body
    assert outside(opened_paths, hostile_tree) == []
    for header, value in response.items():
        assert "\n" not in header + value


@FUZZ
@given(name=names)
def test_hashstatic_answers_or_errors_cleanly(
    hostile_tree: StaticTree, opened_paths: list[str], name: str
) -> None:
    opened_paths.clear()
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("hashstatic", "--", name, stdout=out, stderr=err)
    except CommandError as exc:
        message = str(exc)
    else:
        message = "could not be found"  # it was found and printed
    assert "could not be found" in message
    assert outside(opened_paths, hostile_tree) == []
    assert SECRET.decode() not in out.getvalue()


def test_json_manifest_holds_names_and_urls_only(hostile_tree: StaticTree) -> None:
    out = io.StringIO()
    # The two symlinks out of the roots are reported as not found (exit 1).
    with pytest.raises(CommandError, match=r"2 of \d+ names could not be found"):
        call_command("hashstatic", "--json", stdout=out, stderr=io.StringIO())
    manifest = json.loads(out.getvalue())
    assert manifest["css/site.css"] == f"/static/css/site.css?v={sha(b'body{}')}"
    text = out.getvalue()
    assert str(hostile_tree.base) not in text  # no file system path
    assert SECRET.decode() not in text
    assert "link.css" not in manifest  # it points outside: never read


# -- big and awkward files ---------------------------------------------------------


@pytest.mark.subprocess
def test_a_one_gigabyte_file_hashes_in_constant_memory(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    with open(static / "huge.bin", "wb") as stream:
        stream.truncate(1024**3)  # sparse: 1 GiB of zeros, no disk used
    script = textwrap.dedent(
        """
        import resource, sys, django
        django.setup()
        from freshstatic.storage import FreshStaticFilesStorage
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(FreshStaticFilesStorage().url("huge.bin"))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(before, after)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings",
            FRESHSTATIC_TEST_STATIC_DIR=str(static),
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    url, rss = result.stdout.splitlines()
    # SHA-256 of 1 GiB of zeros.
    assert url == "/static/huge.bin?v=49bc20df15e4"
    before_kib, after_kib = (int(value) for value in rss.split())
    assert after_kib - before_kib < 16 * 1024  # peak RSS grew by < 16 MiB


def test_a_file_deleted_between_listing_and_hashing(
    static_tree: StaticTree,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    static_tree.write("keep.css", b"keep")
    gone = static_tree.write("gone.css", b"gone")
    storage = FreshStaticFilesStorage()
    open_within = locations.open_within

    def deleting(path: str, roots: Iterable[str]) -> IO[bytes]:
        if path == str(gone):
            gone.unlink()  # after the lookup, before the read
        return open_within(path, roots)

    monkeypatch.setattr(locations, "open_within", deleting)
    with caplog.at_level("WARNING", logger="freshstatic"):
        digests = storage.hash_names(["keep.css", "gone.css"])
    assert digests["gone.css"] is None
    assert digests["keep.css"] is not None
    assert "'gone.css' could not be read" in caplog.text
    assert storage.url("keep.css") == f"/static/keep.css?v={sha(b'keep')}"


def test_a_file_being_written_while_hashed_ends_fresh(static_tree: StaticTree) -> None:
    path = static_tree.write("growing.js", b"")
    storage = FreshStaticFilesStorage()
    watcher = Watcher(debounce=0.05)
    watcher.start()
    written = threading.Event()

    def write_slowly() -> None:
        with open(path, "wb") as stream:
            for index in range(200):
                stream.write(f"chunk {index}\n".encode() * 500)
                stream.flush()
        written.set()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        while not written.is_set():
            storage.url("growing.js")  # hashes partial content meanwhile
        writer.join()
        final = f"/static/growing.js?v={sha(path.read_bytes())}"
        wait_for(lambda: storage.url("growing.js") == final, message="the final hash")
    finally:
        writer.join()
        watcher.stop()


# -- the watcher killed mid-batch ---------------------------------------------


@pytest.mark.subprocess
def test_sigterm_during_a_batch_exits_cleanly(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    command = ServerProcess(
        [sys.executable, "-u", "-m", "django", "watchstatic"],
        tmp_path / "watchstatic.log",
        cwd=ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings",
            FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
        ),
    )
    try:
        command.wait_output("Ctrl-C to stop")
        for index in range(200):  # events keep arriving while it stops
            static_tree.write(f"burst/{index}.css", b"x")
        command.signal_group(signal.SIGTERM)
        assert command.process.wait(timeout=30) == 0
        assert command.output().rstrip().endswith("Stopped.")
        assert "Traceback" not in command.output()
    finally:
        command.stop()


# -- Redis killed under load ---------------------------------------------------


@pytest.mark.redis
@pytest.mark.subprocess
def test_redis_killed_under_load_loses_no_request(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    static, env = production_example(redis_server, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = gunicorn(tmp_path, port, "--workers", "2", "--threads", "4", **env)
    command = ServerProcess(
        [sys.executable, "-u", "manage.py", "watchstatic"],
        tmp_path / "watchstatic.log",
        cwd=EXAMPLE,
        env=subprocess_env(**env),
    )
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        import urllib.error
        import urllib.request

        while not stop.is_set():
            for url in (base, f"{base}static/js/app.js"):
                try:
                    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
                        response.read()
                        statuses[response.status] += 1
                except urllib.error.HTTPError as exc:
                    statuses[exc.code] += 1
                except OSError:
                    statuses[0] += 1

    try:
        wait_for(lambda: fetch(base), timeout=60, message="gunicorn")
        command.wait_output("Ctrl-C to stop")
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(load)
            wait_for(lambda: sum(statuses.values()) > 200, message="load")
            redis_server.process.kill()  # type: ignore[union-attr]
            redis_server.process.wait()  # type: ignore[union-attr]
            redis_server.process = None
            during = sum(statuses.values())
            wait_for(
                lambda: sum(statuses.values()) > during + 200,
                message="load during the outage",
            )
            redis_server.start()  # empty: every hash and the generation are gone
            after = sum(statuses.values())
            wait_for(lambda: sum(statuses.values()) > after + 200, message="load after")
            stop.set()
        # Every request answered, through the outage.
        assert set(statuses) == {200}, statuses
        # watchstatic survived and invalidates again; the workers follow.
        script = static / "js" / "app.js"
        script.write_text(script.read_text() + "\n// after the outage\n")
        expected = sha(script.read_bytes())
        wait_for(
            lambda: all(
                page_hashes(fetch(base) or "").get("js/app.js") == expected
                for _ in range(6)
            ),
            timeout=30,
            message="the workers to follow watchstatic again",
        )
        assert command.process.poll() is None
        print(f"requests: {sum(statuses.values())}, statuses: {dict(statuses)}")
    finally:
        stop.set()
        command.stop()
        server.stop()
        if redis_server.process is None:
            redis_server.start()
