"""manage.py watchstatic, and real multi-process servers following it."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.utils import (
    EXAMPLE,
    ROOT,
    RedisServer,
    ServerProcess,
    StaticTree,
    copy_example_static,
    fetch,
    free_port,
    gunicorn,
    page_hashes,
    page_pid,
    production_example,
    sha,
    subprocess_env,
    wait_for,
)

WORKERS = 3


def watchstatic(
    tmp_path: Path, *args: str, cwd: Path = ROOT, **env: str
) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-u", "-m", "django", "watchstatic", *args],
        tmp_path / "watchstatic.log",
        cwd=cwd,
        env=subprocess_env(**env),
    )


@pytest.mark.subprocess
def test_prints_each_change_and_stops_cleanly_on_sigterm(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    static_tree.write("css/site.css", b"one")
    command = watchstatic(
        tmp_path,
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
    )
    try:
        command.wait_output("Ctrl-C to stop")
        # LocMem is per-process: watchstatic says it cannot reach servers.
        assert "freshstatic.W004" in command.output()
        static_tree.write("css/site.css", b"two")
        command.wait_output(f"css/site.css -> /static/css/site.css?v={sha(b'two')}")
        command.signal_group(signal.SIGTERM)
        assert command.process.wait(timeout=30) == 0
        assert command.output().rstrip().endswith("Stopped.")
    finally:
        command.stop()


@pytest.mark.subprocess
def test_poll_option_and_ctrl_c(static_tree: StaticTree, tmp_path: Path) -> None:
    command = watchstatic(
        tmp_path,
        "--poll",
        "0.2",
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
    )
    try:
        command.wait_output("(polling every 0.2 s)")
        static_tree.write("polled.js", b"polled")
        command.wait_output(f"polled.js -> /static/polled.js?v={sha(b'polled')}")
        command.signal_group(signal.SIGINT)
        assert command.process.wait(timeout=30) == 0
    finally:
        command.stop()


@pytest.mark.parametrize("seconds", ["0", "-1", "0.01", "61", "nan"])
def test_rejects_a_poll_interval_out_of_range(seconds: str) -> None:
    with pytest.raises(
        CommandError, match=r"^--poll takes a number of seconds from 0\.05 to 60\.$"
    ):
        call_command("watchstatic", "--poll", seconds)


def run_until_started(*args: str) -> tuple[str, str]:
    """Run watchstatic in this process and stop it with SIGTERM once it has
    started, as a process manager would."""
    out, err = StringIO(), StringIO()
    done = threading.Event()

    def stop_once_started() -> None:
        while not done.wait(0.02):
            if "Ctrl-C to stop" in out.getvalue():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    stopper = threading.Thread(target=stop_once_started, daemon=True)
    stopper.start()
    try:
        call_command("watchstatic", *args, stdout=out, stderr=err)
    finally:
        done.set()
        stopper.join(timeout=10)
    return out.getvalue(), err.getvalue()


def test_one_folder_is_singular(tmp_path: Path) -> None:
    with override_settings(
        STATICFILES_FINDERS=["django.contrib.staticfiles.finders.FileSystemFinder"],
        STATICFILES_DIRS=[str(tmp_path)],
    ):
        out, _ = run_until_started()
    assert out.startswith("Watching 1 static folder (native events); Ctrl-C to stop.")


def test_several_folders_are_plural(static_tree: StaticTree) -> None:
    out, err = run_until_started("--poll", "0.5")
    assert out.startswith(
        # The tree's two, the test app's and the package's own.
        "Watching 4 static folders (polling every 0.5 s); Ctrl-C to stop."
    )
    assert "freshstatic.W004" in err
    assert out.rstrip().endswith("Stopped.")


def _wait_every_worker_renders(base: str, script_hash: str, workers: set[int]) -> None:
    """Fetch (concurrently, to reach every worker) until each known worker's
    latest page links the script with ``script_hash``."""
    latest: dict[int, str] = {}

    def every_worker_fresh() -> bool:
        with ThreadPoolExecutor(2 * len(workers)) as pool:
            for html in pool.map(lambda _: fetch(base), range(2 * len(workers))):
                if html is not None:
                    latest[page_pid(html)] = page_hashes(html)["js/app.js"]
        return all(latest.get(pid) == script_hash for pid in workers)

    wait_for(
        every_worker_fresh, timeout=60, message=f"every worker to render {script_hash}"
    )


def _workers(base: str) -> set[int]:
    pids: set[int] = set()

    def all_seen() -> bool:
        with ThreadPoolExecutor(2 * WORKERS) as pool:
            for html in pool.map(lambda _: fetch(base), range(2 * WORKERS)):
                if html is not None:
                    pids.add(page_pid(html))
        return len(pids) == WORKERS

    wait_for(all_seen, timeout=60, message=f"all {WORKERS} workers to answer")
    return pids


def _edit_script(static: Path) -> str:
    script = static / "js" / "app.js"
    script.write_text(script.read_text() + "\n// edited\n")
    return hashlib.sha256(script.read_bytes()).hexdigest()[:12]


@pytest.mark.redis
@pytest.mark.subprocess
def test_gunicorn_workers_follow_watchstatic_through_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    static, env = production_example(redis_server, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = gunicorn(tmp_path, port, "--workers", str(WORKERS), **env)
    command = watchstatic(tmp_path, cwd=EXAMPLE, **env)
    try:
        command.wait_output("Ctrl-C to stop")
        assert "W004" not in command.output()  # Redis is shared
        workers = _workers(base)
        before = page_hashes(fetch(base) or "")["js/app.js"]
        _wait_every_worker_renders(base, before, workers)
        after = _edit_script(static)
        assert after != before
        command.wait_output(f"js/app.js -> /static/js/app.js?v={after}")
        _wait_every_worker_renders(base, after, workers)
    finally:
        assert command.stop() == 0, command.output()
        server.stop()


@pytest.mark.subprocess
def test_preloaded_gunicorn_workers_each_run_a_watcher(tmp_path: Path) -> None:
    static = copy_example_static(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = gunicorn(
        tmp_path,
        port,
        "--workers",
        str(WORKERS),
        "--preload",
        DJANGO_SETTINGS_MODULE="tests.settings_example_preload",
        EXAMPLE_STATIC_DIR=str(static),
    )
    try:
        workers = _workers(base)
        before = page_hashes(fetch(base) or "")["js/app.js"]
        # Per-process LocMem caches: only each worker's own watcher (started
        # again after fork) can have invalidated its memo.
        _wait_every_worker_renders(base, before, workers)
        after = _edit_script(static)
        assert after != before
        _wait_every_worker_renders(base, after, workers)
    finally:
        server.stop()
