"""
Production scenarios with real processes: overlapping releases on one Redis,
Redis restored from an older snapshot, a hung Redis, and memory under
hostile names and repeated stylesheet edits.

Each scenario returns what it saw; tests/test_production.py asserts on it at
a small size and benchmarks/production.py prints it at full size.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.utils import (
    EXAMPLE,
    RedisServer,
    ServerProcess,
    copy_example_static,
    fetch,
    free_port,
    gunicorn,
    page_hashes,
    run_python,
    sha,
    subprocess_env,
    wait_for,
)

# The example runs with the default GENERATION_TTL: a process re-reads the
# shared generation at least this often.
GENERATION_TTL_SECONDS = 1.0
PAGE_NAMES = {"css/site.css", "img/logo.svg", "js/app.js"}


class SnapshotRedis(RedisServer):
    """
    A redis-server of one test alone, in its own folder: saves an RDB file
    on demand, crashes, restarts from that file, and freezes (SIGSTOP).
    """

    def save(self) -> None:
        self.command("SAVE")

    def crash(self) -> None:
        """SIGKILL: nothing is written; the last saved RDB file stays."""
        assert self.process is not None
        self.thaw()
        self.process.kill()
        self.process.wait(timeout=20)
        self.process = None
        self.close_client()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def stop(self) -> None:
        self.thaw()  # a stopped process would never act on SIGTERM
        super().stop()


@contextlib.contextmanager
def snapshot_redis(workdir: Path) -> Iterator[SnapshotRedis]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = SnapshotRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def release(workdir: Path, app_js_suffix: str = "") -> Path:
    """A copy of the example's static files: one release's tree."""
    workdir.mkdir(parents=True, exist_ok=True)
    static = copy_example_static(workdir)
    if app_js_suffix:
        script = static / "js" / "app.js"
        script.write_text(script.read_text() + app_js_suffix)
    return static


def production_env(redis: RedisServer, static: Path) -> dict[str, str]:
    """The example's production settings (Redis, no watcher in the workers)."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings_example_production",
        "EXAMPLE_STATIC_DIR": str(static),
        "REDIS_URL": redis.url,
    }


def socket_timeout_env(
    redis: RedisServer, static: Path, socket_timeout: float | None
) -> dict[str, str]:
    """The same, with Redis socket timeouts of ``socket_timeout`` seconds
    (None: none at all, whatever the example sets)."""
    return {
        **production_env(redis, static),
        "DJANGO_SETTINGS_MODULE": "tests.settings_example_production_timeouts",
        "REDIS_SOCKET_TIMEOUT": "none"
        if socket_timeout is None
        else str(socket_timeout),
    }


def watchstatic(workdir: Path, env: dict[str, str]) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-u", "manage.py", "watchstatic"],
        workdir / "watchstatic.log",
        cwd=EXAMPLE,
        env=subprocess_env(**env),
    )


def app_js_hash(static: Path) -> str:
    return sha((static / "js" / "app.js").read_bytes())


def page_app_js(base: str) -> str | None:
    """The ``?v=`` of js/app.js on one page of ``base``, None if no page."""
    html = fetch(base)
    return None if html is None else page_hashes(html).get("js/app.js", "")


def wait_until_serving(server: ServerProcess, base: str) -> None:
    def answered() -> bool:
        assert server.process.poll() is None, server.output()
        return fetch(base) is not None

    wait_for(answered, timeout=90, message=f"{base} to answer")


# -- overlapping releases ------------------------------------------------------


@dataclass
class Overlap:
    samples: int = 0  # release-2 pages sampled
    stale_during: int = 0  # release-2 pages with another hash, both serving
    stale_after: int = 0  # ...after release 1 stopped
    release_1_samples: int = 0
    release_1_stale: int = 0  # release-1 pages with another hash
    seen: dict[str, int] = field(default_factory=dict)  # release-2 app.js ?v= counts

    @property
    def stale(self) -> int:
        return self.stale_during + self.stale_after


def overlapping_releases(workdir: Path, samples: int) -> Overlap:
    """
    Two releases whose js/app.js differ, each under its own gunicorn, share
    one Redis with the default key prefix; the new release's watchstatic
    starts while the old release still serves. Release 1 renders pages after
    that rotation and before release 2's first page; then both serve, then
    release 1 stops. Every release-2 page must carry release 2's hash.
    """
    result = Overlap()
    with snapshot_redis(workdir / "redis") as redis:
        old = release(workdir / "release-1")
        new = release(workdir / "release-2", "\n// release 2\n")
        old_hash, new_hash = app_js_hash(old), app_js_hash(new)
        assert old_hash != new_hash
        old_port, new_port = free_port(), free_port()
        old_base = f"http://127.0.0.1:{old_port}/"
        new_base = f"http://127.0.0.1:{new_port}/"
        processes: list[ServerProcess] = []
        try:
            old_server = gunicorn(
                workdir / "release-1",
                old_port,
                "--workers",
                "2",
                **production_env(redis, old),
            )
            processes.append(old_server)
            wait_until_serving(old_server, old_base)

            def sample_old() -> None:
                found = page_app_js(old_base)
                if found is not None:
                    result.release_1_samples += 1
                    result.release_1_stale += found != old_hash

            # The deploy: release 2's watcher starts (and rotates) while
            # release 1 keeps serving for a while.
            watcher = watchstatic(workdir / "release-2", production_env(redis, new))
            processes.append(watcher)
            watcher.wait_output("Ctrl-C to stop")
            until = time.monotonic() + 2 * GENERATION_TTL_SECONDS + 0.5
            while time.monotonic() < until:
                sample_old()
            new_server = gunicorn(
                workdir / "release-2",
                new_port,
                "--workers",
                "2",
                **production_env(redis, new),
            )
            processes.append(new_server)
            wait_until_serving(new_server, new_base)

            def sample_new(after: bool) -> None:
                found = page_app_js(new_base)
                assert found is not None, new_server.output()
                result.samples += 1
                result.seen[found] = result.seen.get(found, 0) + 1
                if found != new_hash:
                    if after:
                        result.stale_after += 1
                    else:
                        result.stale_during += 1

            half = samples // 2
            for _ in range(half):  # both releases serving, interleaved
                sample_old()
                sample_new(after=False)
            old_server.stop()
            processes.remove(old_server)
            for _ in range(samples - half):
                sample_new(after=True)
        finally:
            for process in reversed(processes):
                process.stop()
    return result


# -- Redis restored from an older snapshot -------------------------------------


@dataclass
class Restore:
    healed: bool = False
    heal_seconds: float | None = None  # from Redis answering to the last stale page
    samples: int = 0
    stale: int = 0


def restored_snapshot(workdir: Path, bound_seconds: float) -> Restore:
    """
    Save an RDB, edit js/app.js (watchstatic rotates, pages show the new
    hash), crash Redis and restart it from that RDB: the old generation and
    the old hash come back. Pages must show the new hash again, and keep it
    for longer than a generation re-read (twice GENERATION_TTL, plus 1 s).
    """
    result = Restore()
    with snapshot_redis(workdir / "redis") as redis:
        static = release(workdir / "site")
        env = production_env(redis, static)
        port = free_port()
        base = f"http://127.0.0.1:{port}/"
        server = gunicorn(workdir / "site", port, "--workers", "2", **env)
        command = watchstatic(workdir / "site", env)
        try:
            command.wait_output("Ctrl-C to stop")
            wait_until_serving(server, base)
            before = app_js_hash(static)
            wait_for(
                lambda: all(page_app_js(base) == before for _ in range(6)),
                timeout=30,
                message="pages with the hash of app.js",
            )
            redis.save()  # the snapshot: the old generation, the old hash
            script = static / "js" / "app.js"
            script.write_text(script.read_text() + "\n// edited after the snapshot\n")
            after = app_js_hash(static)
            wait_for(
                lambda: all(page_app_js(base) == after for _ in range(6)),
                timeout=30,
                message="pages with the hash of the edited app.js",
            )
            redis.crash()
            redis.start()  # from the RDB saved before the edit
            restarted = time.monotonic()
            steady = 2 * GENERATION_TTL_SECONDS + 1.0
            fresh_since: float | None = None
            last_stale: float | None = None
            while True:
                found = page_app_js(base)
                now = time.monotonic()
                if found is None:
                    pass  # a worker not answering is another test's business
                elif found == after:
                    result.samples += 1
                    fresh_since = now if fresh_since is None else fresh_since
                    if now - fresh_since >= steady:
                        result.healed = True
                        break
                else:
                    result.samples += 1
                    result.stale += 1
                    last_stale, fresh_since = now, None
                if now - restarted > bound_seconds:
                    break
            if result.healed:
                result.heal_seconds = (
                    0.0 if last_stale is None else last_stale - restarted
                )
        finally:
            command.stop()
            server.stop()
    return result


# -- a hung Redis --------------------------------------------------------------


@dataclass
class Freeze:
    healthy: int = 0  # pages completed in the window with Redis answering
    frozen: int = 0  # pages completed in an equal window with Redis stopped
    frozen_without_hashes: int = 0  # of those, pages missing a ?v= hash
    frozen_other_hashes: int = 0  # of those, pages whose hashes changed
    errors: int = 0


class Load:
    """Client threads fetching a page over and over, each completion timed."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.done: list[tuple[float, dict[str, str]]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(clients)
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:  # noqa: S310 (loopback)
                    html = response.read().decode()
            except OSError:  # HTTPError included
                with self._lock:
                    self.errors += 1
                continue
            finished = time.monotonic()
            with self._lock:
                self.done.append((finished, page_hashes(html)))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def between(self, start: float, end: float) -> list[dict[str, str]]:
        with self._lock:
            return [hashes for finished, hashes in self.done if start <= finished < end]


def hung_redis(
    workdir: Path,
    seconds: float,
    socket_timeout: float | None,
    clients: int = 8,
) -> Freeze:
    """
    gunicorn (3 workers of 4 threads) on the production settings, with
    socket timeouts of ``socket_timeout`` seconds (None: none), under
    ``clients`` concurrent page loads: pages completed in ``seconds`` with
    Redis healthy, then in ``seconds`` with redis-server stopped (SIGSTOP).
    """
    result = Freeze()
    with snapshot_redis(workdir / "redis") as redis:
        static = release(workdir / "site")
        env = socket_timeout_env(redis, static, socket_timeout)
        port = free_port()
        base = f"http://127.0.0.1:{port}/"
        server = gunicorn(
            workdir / "site", port, "--workers", "3", "--threads", "4", **env
        )
        command = watchstatic(workdir / "site", env)
        try:
            command.wait_output("Ctrl-C to stop")
            wait_until_serving(server, base)
            expected = page_hashes(fetch(base) or "")
            assert set(expected) == PAGE_NAMES, expected
            with Load(base, clients) as load:
                # Every worker and thread warm before the healthy window.
                wait_for(lambda: len(load.done) > 100, timeout=60, message="load")
                start = time.monotonic()
                time.sleep(seconds)  # the window itself: a measurement
                frozen_at = time.monotonic()
                redis.freeze()
                try:
                    time.sleep(seconds)
                finally:
                    thawed = time.monotonic()
                    redis.thaw()
                wait_for(
                    lambda: load.between(thawed, float("inf")),
                    timeout=60,
                    message="pages after Redis answers again",
                )
            result.healthy = len(load.between(start, start + seconds))
            during = load.between(frozen_at, thawed)
            result.frozen = len(during)
            result.frozen_without_hashes = sum(
                set(hashes) != PAGE_NAMES for hashes in during
            )
            result.frozen_other_hashes = sum(
                set(hashes) == PAGE_NAMES and hashes != expected for hashes in during
            )
            result.errors = load.errors
        finally:
            command.stop()
            server.stop()
    return result


# -- memory --------------------------------------------------------------------

_PEAK_RSS = """
import json, logging, resource

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

import django
django.setup()
# Warnings are made and handled as usual, just not printed.
logging.getLogger("freshstatic").addHandler(logging.NullHandler())
logging.getLogger("freshstatic").propagate = False
"""

_MISSING_NAMES = (
    _PEAK_RSS
    + """
from django.templatetags.static import static

def name(index):
    head = f"missing/{index:07d}/"
    body = ("n" * 99 + "/") * ((LENGTH - len(head)) // 100)
    return (head + body + "x" * LENGTH)[: LENGTH - 4] + ".css"

for index in range(200):  # warm: every code path taken once
    static(name(-index - 1))
before = peak_mib()
for index in range(COUNT):
    static(name(index))
print(json.dumps({"before": before, "after": peak_mib()}))
"""
)

_STYLESHEET_EDITS = (
    _PEAK_RSS
    + """
import os
from django.test import Client, override_settings

path = os.path.join(os.environ["FRESHSTATIC_TEST_STATIC_DIR"], "css", "big.css")
rule = ".r{index} {{ color: #{index:06x}; margin: 0 auto; padding: 1px 2px; }}\\n"

def edit(index):
    head = (
        f"/* version {index} */\\n"
        '@import "base.css";\\n'
        '.logo {{ background: url("../img/dot.png"); }}\\n'
    )
    rules = "".join(
        rule.format(index=(i * 7919 + index) % 0xFFFFFF) for i in range(20000)
    )
    # Each version a few bytes longer: a new file identity, whatever the clock.
    text = (head + rules)[: SIZE - 40] + " " * (index % 40) + "\\n"
    with open(path, "w") as stream:
        stream.write(text)

with override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"]):
    client = Client()
    def request(index):
        edit(index)
        response = client.get("/static/css/big.css")
        assert response.status_code == 200, response.status_code
        body = (
            b"".join(response.streaming_content)
            if response.streaming
            else response.content
        )
        assert f"/* version {index} */".encode() in body
        assert b"dot.png?v=" in body
        response.close()

    for index in range(3):  # warm
        request(-index - 1)
    before = peak_mib()
    for index in range(EDITS):
        request(index)
print(json.dumps({"before": before, "after": peak_mib()}))
"""
)


@dataclass
class Memory:
    before_mib: float
    after_mib: float

    @property
    def growth_mb(self) -> float:
        """Peak RSS growth in MB (10**6 bytes), the unit of the goals."""
        return (self.after_mib - self.before_mib) * 2**20 / 1e6


def _peak_rss(workdir: Path, script: str, **constants: int) -> Memory:
    static = workdir / "static"
    (static / "css").mkdir(parents=True, exist_ok=True)
    (static / "img").mkdir(parents=True, exist_ok=True)
    (static / "css" / "base.css").write_text("body { margin: 0; }\n")
    (static / "img" / "dot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    prelude = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    result = run_python(
        ["-c", prelude + textwrap.dedent(script)],
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_STATIC_DIR=str(static),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return Memory(figures["before"], figures["after"])


def missing_names_memory(workdir: Path, count: int, length: int = 3000) -> Memory:
    """Peak RSS around ``static()`` of ``count`` distinct missing names."""
    return _peak_rss(workdir, _MISSING_NAMES, COUNT=count, LENGTH=length)


def stylesheet_edits_memory(
    workdir: Path, edits: int, size: int = 1024 * 1024
) -> Memory:
    """Peak RSS around ``edits`` edits of a stylesheet, each then requested
    through FreshStaticMiddleware."""
    return _peak_rss(workdir, _STYLESHEET_EDITS, EDITS=edits, SIZE=size)
