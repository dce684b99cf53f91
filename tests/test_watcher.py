"""Real watchdog observers on real temporary folders."""

from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from watchdog.observers import Observer

from freshstatic import watcher as watcher_module
from freshstatic.signals import static_changed
from freshstatic.storage import FreshStaticFilesStorage
from freshstatic.watcher import (
    Watcher,
    management_command,
    path_to_name,
    should_autostart,
)
from tests.conftest import (
    RedisServer,
    StaticTree,
    run_python,
    sha,
    wait_for,
)

TIMEOUT = 20.0


class Batches:
    """Every static_changed batch, as sent."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, ...] | None] = queue.Queue()
        self.seen: list[tuple[str, ...] | None] = []

    def __call__(
        self, sender: object, names: tuple[str, ...] | None, **kwargs: Any
    ) -> None:
        self.queue.put(names)

    def until(self, name: str) -> list[tuple[str, ...] | None]:
        """Wait for a batch naming ``name``; return every batch up to it."""
        collected: list[tuple[str, ...] | None] = []
        while True:
            try:
                names = self.queue.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(
                    f"no batch named {name!r} within {TIMEOUT}s; saw {collected}"
                )
            collected.append(names)
            self.seen.append(names)
            if names is not None and name in names:
                return collected


@pytest.fixture
def batches() -> Iterator[Batches]:
    receiver = Batches()
    static_changed.connect(receiver)
    yield receiver
    static_changed.disconnect(receiver)


@pytest.fixture
def watcher(static_tree: StaticTree) -> Iterator[Watcher]:
    instance = Watcher(debounce=0.05)
    instance.start()
    yield instance
    instance.stop()


def fresh_url(name: str, data: bytes) -> str:
    return f"/static/{name}?v={sha(data)}"


def test_in_place_write(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    path = static_tree.write("css/site.css", b"old")
    storage = FreshStaticFilesStorage()
    assert storage.url("css/site.css") == fresh_url("css/site.css", b"old")
    batches.until("css/site.css")  # the creation above
    with open(path, "r+b") as stream:
        stream.write(b"new")
    batches.until("css/site.css")
    assert storage.url("css/site.css") == fresh_url("css/site.css", b"new")


def test_jetbrains_safe_write(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    path = static_tree.write("a.css", b"old")
    storage = FreshStaticFilesStorage()
    batches.until("a.css")
    assert storage.url("a.css") == fresh_url("a.css", b"old")
    # Write a temp file, move the original aside, move the temp file in.
    temp = path.with_name("a.css___jb_tmp___")
    old = path.with_name("a.css___jb_old___")
    temp.write_bytes(b"new")
    os.rename(path, old)
    os.rename(temp, path)
    old.unlink()
    seen = batches.until("a.css")
    assert all("___jb_" not in name for batch in seen for name in batch or ())
    assert storage.url("a.css") == fresh_url("a.css", b"new")


def test_write_temp_then_rename(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    path = static_tree.write("js/app.js", b"old")
    storage = FreshStaticFilesStorage()
    batches.until("js/app.js")
    assert storage.url("js/app.js") == fresh_url("js/app.js", b"old")
    temp = path.with_name(".app.js.4f2a.tmp")
    temp.write_bytes(b"new")
    os.replace(temp, path)
    batches.until("js/app.js")
    assert storage.url("js/app.js") == fresh_url("js/app.js", b"new")


def test_delete_and_recreate(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    path = static_tree.write("a.css", b"old")
    storage = FreshStaticFilesStorage()
    batches.until("a.css")
    assert storage.url("a.css") == fresh_url("a.css", b"old")
    # vim with backupcopy=no: move aside as a backup, write anew, drop backup.
    backup = path.with_name("a.css~")
    os.rename(path, backup)
    path.write_bytes(b"new")
    backup.unlink()
    batches.until("a.css")
    assert storage.url("a.css") == fresh_url("a.css", b"new")


def test_deleted_file_loses_its_hash(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    path = static_tree.write("gone.css", b"here")
    storage = FreshStaticFilesStorage()
    batches.until("gone.css")
    assert storage.url("gone.css") == fresh_url("gone.css", b"here")
    path.unlink()
    batches.until("gone.css")
    assert storage.url("gone.css") == "/static/gone.css"


def test_folders_created_after_start(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    storage = FreshStaticFilesStorage()
    assert storage.url("new/deep/x.css") == "/static/new/deep/x.css"
    (static_tree.plain / "new" / "deep").mkdir(parents=True)
    static_tree.write("new/deep/x.css", b"x")
    batches.until("new/deep/x.css")
    assert storage.url("new/deep/x.css") == fresh_url("new/deep/x.css", b"x")
    static_tree.write("new/deep/x.css", b"edited")
    batches.until("new/deep/x.css")
    assert storage.url("new/deep/x.css") == fresh_url("new/deep/x.css", b"edited")


def test_folder_moved_in_and_out(
    static_tree: StaticTree, watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "theme"
    (outside / "img").mkdir(parents=True)
    (outside / "theme.css").write_bytes(b"theme")
    (outside / "img" / "bg.svg").write_bytes(b"<svg/>")
    storage = FreshStaticFilesStorage()
    assert storage.url("theme/theme.css") == "/static/theme/theme.css"
    os.rename(outside, static_tree.plain / "theme")
    batches.until("theme/theme.css")
    assert storage.url("theme/theme.css") == fresh_url("theme/theme.css", b"theme")
    assert storage.url("theme/img/bg.svg") == fresh_url("theme/img/bg.svg", b"<svg/>")
    os.rename(static_tree.plain / "theme", outside)
    batches.until("theme")
    assert storage.url("theme/theme.css") == "/static/theme/theme.css"


def test_prefixed_staticfiles_dir(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    static_tree.write("vendor/lib.js", b"one")
    storage = FreshStaticFilesStorage()
    batches.until("vendor/lib.js")
    assert storage.url("vendor/lib.js") == fresh_url("vendor/lib.js", b"one")
    static_tree.write("vendor/lib.js", b"two")
    batches.until("vendor/lib.js")
    assert storage.url("vendor/lib.js") == fresh_url("vendor/lib.js", b"two")


def test_app_static_folder(tmp_path: Path, batches: Batches) -> None:
    package = tmp_path / "liveapp"
    (package / "static" / "liveapp").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    css = package / "static" / "liveapp" / "app.css"
    css.write_bytes(b"app one")
    sys.path.insert(0, str(tmp_path))
    try:
        with override_settings(
            INSTALLED_APPS=["django.contrib.staticfiles", "freshstatic", "liveapp"]
        ):
            watcher = Watcher(debounce=0.05)
            watcher.start()
            try:
                storage = FreshStaticFilesStorage()
                name = "liveapp/app.css"
                assert storage.url(name) == fresh_url(name, b"app one")
                css.write_bytes(b"app two")
                batches.until(name)
                assert storage.url(name) == fresh_url(name, b"app two")
            finally:
                watcher.stop()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("liveapp", None)


def test_static_root_is_watched(tmp_path: Path, batches: Batches) -> None:
    root = tmp_path / "collected"
    root.mkdir()
    (root / "c.css").write_bytes(b"collected one")
    with override_settings(STATIC_ROOT=str(root)):
        watcher = Watcher(debounce=0.05)
        watcher.start()
        try:
            assert ("", str(root)) in watcher.roots
            storage = FreshStaticFilesStorage()
            assert storage.url("c.css") == fresh_url("c.css", b"collected one")
            (root / "c.css").write_bytes(b"collected two")
            batches.until("c.css")
            assert storage.url("c.css") == fresh_url("c.css", b"collected two")
        finally:
            watcher.stop()


def test_a_burst_of_writes_is_coalesced(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    static_tree.write("burst/0.css", b"start")
    batches.until("burst/0.css")
    storage = FreshStaticFilesStorage()
    for index in range(100):
        static_tree.write(f"burst/{index % 10}.css", f"write {index}".encode())
    static_tree.write("burst/done.css", b"done")
    seen = batches.until("burst/done.css")
    # 101 writes (several events each) arrive as a handful of batches.
    assert len(seen) <= 10
    assert {f"burst/{index}.css" for index in range(10)} <= {
        name for batch in seen for name in batch or ()
    }
    assert storage.url("burst/9.css") == fresh_url("burst/9.css", b"write 99")


def test_editor_noise_triggers_nothing(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    for noise in [
        ".site.css.swp",
        "site.css.swo",
        "site.css~",
        ".#site.css",
        "4913",
        "x.tmp",
    ]:
        static_tree.write(f"css/{noise}", b"noise")
    static_tree.write("css/sentinel.css", b"sentinel")
    seen = batches.until("css/sentinel.css")
    # Only the sentinel (the css/ folder, created empty, changes no URL).
    assert {name for batch in seen for name in batch or ()} == {"css/sentinel.css"}


def test_polling_setting(static_tree: StaticTree, batches: Batches) -> None:
    static_tree.write("p.css", b"one")
    with override_settings(FRESHSTATIC={"POLL": 0.1}):
        watcher = Watcher(debounce=0.05)
        watcher.start()
        try:
            assert watcher.mode == "polling every 0.1 s"
            storage = FreshStaticFilesStorage()
            assert storage.url("p.css") == fresh_url("p.css", b"one")
            static_tree.write("p.css", b"two, longer")
            batches.until("p.css")
            assert storage.url("p.css") == fresh_url("p.css", b"two, longer")
        finally:
            watcher.stop()


class WatchLimitObserver(Observer):  # type: ignore[misc,valid-type]
    """The native observer, failing at start as a full inotify table makes it."""

    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_falls_back_to_polling_when_inotify_is_full(
    static_tree: StaticTree, batches: Batches, caplog: pytest.LogCaptureFixture
) -> None:
    static_tree.write("f.css", b"one")
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        watcher = Watcher(debounce=0.05, observer_class=WatchLimitObserver)
        watcher.start()
    try:
        assert watcher.mode == "polling every 1 s"
        assert "fs.inotify.max_user_watches" in caplog.text
        assert "FRESHSTATIC['POLL']" in caplog.text
        storage = FreshStaticFilesStorage()
        assert storage.url("f.css") == fresh_url("f.css", b"one")
        static_tree.write("f.css", b"two, longer")
        batches.until("f.css")
        assert storage.url("f.css") == fresh_url("f.css", b"two, longer")
    finally:
        watcher.stop()


def test_a_failing_receiver_is_logged_and_watching_goes_on(
    static_tree: StaticTree,
    watcher: Watcher,
    batches: Batches,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(sender: object, **kwargs: object) -> None:
        raise RuntimeError("receiver bug")

    static_changed.connect(explode)
    storage = FreshStaticFilesStorage()
    try:
        with caplog.at_level(logging.ERROR, logger="freshstatic"):
            static_tree.write("r.css", b"one")
            wait_for(lambda: "receiver bug" in caplog.text, message="the logged error")
        assert "Traceback" in caplog.text
    finally:
        static_changed.disconnect(explode)
    batches.until("r.css")  # the batch the failing receiver saw
    assert storage.url("r.css") == fresh_url("r.css", b"one")
    static_tree.write("r.css", b"two")
    batches.until("r.css")
    assert storage.url("r.css") == fresh_url("r.css", b"two")


def test_a_dead_observer_is_restarted(
    static_tree: StaticTree, batches: Batches, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = Watcher(debounce=0.05, supervise_seconds=0.05)
    watcher.start()
    try:
        observer = watcher._observer
        assert observer is not None
        with caplog.at_level(logging.ERROR, logger="freshstatic"):
            observer.stop()  # as if its thread had died
            wait_for(
                lambda: watcher._observer not in (None, observer), message="restart"
            )
        assert "stopped; restarting" in caplog.text
        storage = FreshStaticFilesStorage()
        static_tree.write("after.css", b"after")
        batches.until("after.css")
        assert storage.url("after.css") == fresh_url("after.css", b"after")
    finally:
        watcher.stop()


def test_start_is_idempotent_and_stop_joins(static_tree: StaticTree) -> None:
    watcher = Watcher()
    watcher.start()
    supervisor, observer = watcher._supervisor, watcher._observer
    watcher.start()
    assert (watcher._supervisor, watcher._observer) == (supervisor, observer)
    watcher.stop()
    assert supervisor is not None
    assert observer is not None
    assert not supervisor.is_alive()
    assert not observer.is_alive()
    assert not watcher.running


def test_process_watcher_start_and_stop(static_tree: StaticTree) -> None:
    first = watcher_module.start(debounce=0.05)
    try:
        assert watcher_module.start() is first
        assert watcher_module.get() is first
        assert first.running
    finally:
        watcher_module.stop()
    assert watcher_module.get() is None
    assert not first.running


@pytest.mark.redis
def test_rotation_retried_after_a_redis_outage(
    static_tree: StaticTree,
    redis_cache: RedisServer,
    batches: Batches,
    caplog: pytest.LogCaptureFixture,
) -> None:
    static_tree.write("o.css", b"one")
    watcher = Watcher(debounce=0.05, supervise_seconds=0.05)
    watcher.start()
    try:
        with caplog.at_level(logging.WARNING, logger="freshstatic"):
            storage = FreshStaticFilesStorage()
            assert storage.url("o.css") == fresh_url("o.css", b"one")
            redis_cache.stop()
            static_tree.write("o.css", b"two")
            batches.until("o.css")
            # This process is fresh at once; others wait for Redis.
            assert storage.url("o.css") == fresh_url("o.css", b"two")
            redis_cache.start()
            wait_for(
                lambda: "invalidated after the cache came back" in caplog.text,
                message="the retried rotation",
            )
        assert storage.url("o.css") == fresh_url("o.css", b"two")
    finally:
        watcher.stop()


def test_path_to_name() -> None:
    roots = [("", "/s"), ("vendor", "/v"), ("", "/s/nested")]
    assert path_to_name("/s/css/a.css", roots) == "css/a.css"
    assert path_to_name("/v/lib/x.js", roots) == "vendor/lib/x.js"
    assert path_to_name("/s/nested/b.css", roots) == "b.css"
    assert path_to_name("/elsewhere/c.css", roots) is None
    assert path_to_name("/sibling/c.css", [("", "/s")]) is None


@pytest.mark.parametrize(
    ("argv", "env", "watch", "expected"),
    [
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, "auto", True),
        (["manage.py", "runserver"], {}, "auto", False),  # the autoreloader's parent
        (["manage.py", "runserver", "--noreload"], {}, "auto", True),
        (["/x/django/__main__.py", "runserver", "--noreload"], {}, "auto", True),
        (["manage.py", "migrate"], {}, "auto", False),
        (["manage.py", "check"], {}, True, False),
        (["manage.py", "collectstatic"], {}, True, False),
        (["manage.py", "watchstatic"], {}, True, False),
        (["manage.py"], {}, True, False),
        (["/venv/bin/gunicorn", "site.wsgi"], {}, "auto", False),
        (["/venv/bin/gunicorn", "site.wsgi"], {}, True, True),
        (["/venv/bin/pytest"], {}, "auto", False),
        (["manage.py", "runserver", "--noreload"], {}, False, False),
        ([], {}, True, True),
    ],
)
def test_should_autostart(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    watch: object,
    expected: bool,
) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("RUN_MAIN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with override_settings(FRESHSTATIC={"WATCH": watch}):
        assert should_autostart() is expected


def test_management_command() -> None:
    assert management_command(["django-admin", "runserver"]) == "runserver"
    assert management_command(["manage.py"]) == "help"
    assert management_command(["uwsgi"]) is None


@pytest.mark.subprocess
def test_watcher_restarts_in_a_forked_child(static_tree: StaticTree) -> None:
    """A preloaded server forks workers: each must get a live watcher."""
    script = textwrap.dedent(
        """
        import os, sys, threading, django
        django.setup()
        from freshstatic import watcher
        from freshstatic.signals import static_changed

        parent = watcher.start(debounce=0.05)
        pid = os.fork()
        if pid == 0:
            seen = threading.Event()
            def receive(sender, names, **kwargs):
                if names and "forked.css" in names:
                    seen.set()
            static_changed.connect(receive, weak=False)
            child = watcher.get()
            ok = child is not None and child is not parent and child.running
            with open(os.path.join(sys.argv[1], "forked.css"), "w") as f:
                f.write("from the child")
            ok = ok and seen.wait(20)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    result = run_python(
        ["-c", script, str(static_tree.plain)],
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
    )
    assert result.returncode == 0, result.stderr


def test_start_invalidates_what_changed_while_no_watcher_ran(
    static_tree: StaticTree,
) -> None:
    static_tree.write("down.css", b"before the restart")
    storage = FreshStaticFilesStorage()
    assert storage.url("down.css") == fresh_url("down.css", b"before the restart")
    static_tree.write("down.css", b"edited while nothing watched")
    watcher = Watcher(debounce=0.05)
    watcher.start()
    try:
        assert storage.url("down.css") == fresh_url(
            "down.css", b"edited while nothing watched"
        )
    finally:
        watcher.stop()


def test_stop_flushes_the_waiting_batch(
    static_tree: StaticTree, batches: Batches
) -> None:
    watcher = Watcher(debounce=30)
    watcher.start()
    static_tree.write("late.css", b"late")
    wait_for(lambda: watcher._pending, message="the event to be queued")
    watcher.stop()
    assert batches.until("late.css")


def test_a_root_deleted_and_recreated_is_watched_again(
    static_tree: StaticTree, batches: Batches
) -> None:
    watcher = Watcher(debounce=0.05, supervise_seconds=0.05)
    watcher.start()
    try:
        shutil.rmtree(static_tree.plain)
        wait_for(
            lambda: ("", str(static_tree.plain)) not in watcher.roots, message="drop"
        )
        static_tree.plain.mkdir()
        wait_for(
            lambda: ("", str(static_tree.plain)) in watcher.roots, message="re-add"
        )
        storage = FreshStaticFilesStorage()
        static_tree.write("rebuilt.css", b"one")
        batches.until("rebuilt.css")
        assert storage.url("rebuilt.css") == fresh_url("rebuilt.css", b"one")
        static_tree.write("rebuilt.css", b"two")
        batches.until("rebuilt.css")
        assert storage.url("rebuilt.css") == fresh_url("rebuilt.css", b"two")
    finally:
        watcher.stop()
