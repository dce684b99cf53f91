"""Real watchdog observers on real temporary folders."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import queue
import re
import shutil
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

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

# Generous: a loaded machine delays events by seconds, never by this much.
TIMEOUT = 30.0
SENTINEL = "settled-"

Batch = tuple[str, ...] | None


class Batches:
    """Every static_changed batch, as sent."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Batch] = queue.Queue()
        self._sentinels = itertools.count()

    def __call__(self, sender: object, names: Batch, **kwargs: Any) -> None:
        self.queue.put(names)

    def until(self, name: str) -> list[Batch]:
        """Wait for a batch naming ``name``; return every batch up to it."""
        collected: list[Batch] = []
        while True:
            try:
                names = self.queue.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(
                    f"no batch named {name!r} within {TIMEOUT}s; saw {collected}"
                )
            collected.append(names)
            if names is not None and name in names:
                return collected

    def settle(self, beside: Path, name: str) -> list[Batch]:
        """
        Write a sentinel file beside ``beside`` (static name ``name``) and
        wait for the batch naming it: every event of that root before it has
        been delivered, so a later batch comes from a later change.
        """
        filename = f"{SENTINEL}{next(self._sentinels)}.txt"
        folder = name.rpartition("/")[0]
        beside.with_name(filename).write_bytes(b"settled")
        return self.until(f"{folder}/{filename}" if folder else filename)


def reported(batches: Iterable[Batch]) -> set[str]:
    """The names the batches reported, sentinels aside."""
    return {
        name
        for batch in batches
        for name in batch or ()
        if not name.rpartition("/")[2].startswith(SENTINEL)
    }


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


# -- every editor's save style ---------------------------------------------------

OLD = b"old content"
NEW = b"new content"  # as long as OLD: an in-place write leaves nothing behind


def write_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as stream:
        stream.write(data)


def truncate_and_write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def write_temp_then_rename(path: Path, data: bytes) -> None:
    # VS Code, Sublime Text, atomic writers.
    temp = path.with_name(f".{path.name}.4f2a.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def jetbrains_safe_write(path: Path, data: bytes) -> None:
    # Write a temp file, move the original aside, move the temp file in.
    temp = path.with_name(f"{path.name}___jb_tmp___")
    old = path.with_name(f"{path.name}___jb_old___")
    temp.write_bytes(data)
    os.rename(path, old)
    os.rename(temp, path)
    old.unlink()


def vim_backup_by_rename(path: Path, data: bytes) -> None:
    # vim with backupcopy=no: probe the folder, move the file aside as its
    # backup, write it anew, drop the backup.
    probe = path.with_name("4913")
    probe.write_bytes(b"")
    probe.unlink()
    backup = path.with_name(f"{path.name}~")
    os.rename(path, backup)
    path.write_bytes(data)
    backup.unlink()


def vim_backup_by_copy(path: Path, data: bytes) -> None:
    # vim with backupcopy=yes and a swap file: copy aside, rewrite in place.
    swap = path.with_name(f".{path.name}.swp")
    swap.write_bytes(b"swap")
    backup = path.with_name(f"{path.name}~")
    shutil.copyfile(path, backup)
    path.write_bytes(data)
    backup.unlink()
    swap.unlink()


def emacs_save(path: Path, data: bytes) -> None:
    # A lock symlink while editing, a backup by rename at the first save.
    lock = path.with_name(f".#{path.name}")
    os.symlink("user@host.1234:1700000000", lock)
    os.rename(path, path.with_name(f"{path.name}~"))
    path.write_bytes(data)
    lock.unlink()


def delete_and_recreate(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def delete(path: Path, data: bytes) -> None:
    path.unlink()


SAVE_STYLES: list[Callable[[Path, bytes], None]] = [
    write_in_place,
    truncate_and_write,
    write_temp_then_rename,
    jetbrains_safe_write,
    vim_backup_by_rename,
    vim_backup_by_copy,
    emacs_save,
    delete_and_recreate,
    delete,
]


@pytest.mark.parametrize("save", SAVE_STYLES, ids=lambda save: save.__name__)
@pytest.mark.parametrize("name", ["css/site.css", "vendor/lib.js"])
def test_every_save_style_gives_a_fresh_url(
    static_tree: StaticTree,
    watcher: Watcher,
    batches: Batches,
    save: Callable[[Path, bytes], None],
    name: str,
) -> None:
    path = static_tree.write(name, OLD)
    batches.settle(path, name)  # the creation is delivered: it cannot stand in
    storage = FreshStaticFilesStorage()
    assert storage.url(name) == fresh_url(name, OLD)  # and remembered
    save(path, NEW)
    seen = batches.until(name)
    expected = f"/static/{name}" if save is delete else fresh_url(name, NEW)
    assert storage.url(name) == expected
    # Only the file itself was reported: no temporary, backup, swap or lock
    # file, in any batch up to the edit's last event.
    seen += batches.settle(path, name)
    assert reported(seen) == {name}


# -- folders ----------------------------------------------------------------------


def test_folders_created_after_start(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    name = "new/deep/x.css"
    storage = FreshStaticFilesStorage()
    assert storage.url(name) == f"/static/{name}"
    (static_tree.plain / "new" / "deep").mkdir(parents=True)
    path = static_tree.write(name, b"x")
    batches.until(name)
    assert storage.url(name) == fresh_url(name, b"x")
    batches.settle(path, name)
    assert storage.url(name) == fresh_url(name, b"x")
    static_tree.write(name, b"edited")
    batches.until(name)
    assert storage.url(name) == fresh_url(name, b"edited")


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
    batches.settle(static_tree.plain / "theme" / "theme.css", "theme/theme.css")
    assert storage.url("theme/theme.css") == fresh_url("theme/theme.css", b"theme")
    os.rename(static_tree.plain / "theme", outside)
    batches.until("theme")
    assert storage.url("theme/theme.css") == "/static/theme/theme.css"


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


def test_a_symlinked_root_is_watched_and_a_swapped_link_followed(
    tmp_path: Path, batches: Batches
) -> None:
    first, second = tmp_path / "release-1", tmp_path / "release-2"
    first.mkdir()
    second.mkdir()
    (first / "s.css").write_bytes(b"one")
    (second / "s.css").write_bytes(b"two")
    (second / "new.css").write_bytes(b"new")
    current = tmp_path / "current"
    current.symlink_to(first)
    with override_settings(STATICFILES_DIRS=[str(current)]):
        watcher = Watcher(debounce=0.05, supervise_seconds=0.05)
        watcher.start()
        try:
            storage = FreshStaticFilesStorage()
            assert storage.url("s.css") == fresh_url("s.css", b"one")
            # A file directly inside the linked folder.
            (current / "s.css").write_bytes(b"one, edited")
            batches.until("s.css")
            assert storage.url("s.css") == fresh_url("s.css", b"one, edited")
            batches.settle(current / "s.css", "s.css")
            assert storage.url("s.css") == fresh_url("s.css", b"one, edited")
            # A deploy points the link at the next release.
            (tmp_path / "next").symlink_to(second)
            os.replace(tmp_path / "next", current)
            seen = batches.until("new.css")
            assert {"s.css", "new.css"} <= reported(seen)
            assert storage.url("s.css") == fresh_url("s.css", b"two")
        finally:
            watcher.stop()


# -- batches ----------------------------------------------------------------------


def test_a_burst_of_writes_is_one_batch(
    static_tree: StaticTree, batches: Batches
) -> None:
    storage = FreshStaticFilesStorage()
    static_tree.write("burst/9.css", b"start")
    assert storage.url("burst/9.css") == fresh_url("burst/9.css", b"start")
    # No quiet period and no time limit end this batch: stop() delivers it.
    watcher = Watcher(debounce=3600, max_batch_seconds=3600)
    watcher.start()
    try:
        for index in range(100):
            static_tree.write(f"burst/{index % 10}.css", f"write {index}".encode())
        static_tree.write("burst/done.css", b"done")
        wait_for(
            lambda: "burst/done.css" in watcher.pending,
            timeout=TIMEOUT,
            message="the last write to be queued",
        )
    finally:
        watcher.stop()
    # 101 writes, several events each: one batch.
    names = {f"burst/{index}.css" for index in range(10)} | {"burst/done.css"}
    assert batches.until("burst/done.css") == [tuple(sorted(names))]
    assert storage.url("burst/9.css") == fresh_url("burst/9.css", b"write 99")


def test_a_steady_stream_still_flushes_in_time(
    static_tree: StaticTree, batches: Batches
) -> None:
    # An hour's quiet period, were it not for MAX_BATCH_SECONDS.
    watcher = Watcher(debounce=3600, max_batch_seconds=0.05)
    watcher.start()
    try:
        static_tree.write("stream.css", b"one")
        batches.until("stream.css")
    finally:
        watcher.stop()


def test_editor_noise_triggers_nothing(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    for noise in [
        ".site.css.swp",
        "site.css.swo",
        "site.css~",
        ".#site.css",
        "#site.css#",
        "4913",
        "x.tmp",
        "site.css___jb_tmp___",
        ".goutputstream-XYZ123",
        ".DS_Store",
    ]:
        static_tree.write(f"css/{noise}", b"noise")
    static_tree.write("css/sentinel.css", b"sentinel")
    seen = batches.until("css/sentinel.css")
    # Only the sentinel (the css/ folder, created empty, changes no URL).
    assert reported(seen) == {"css/sentinel.css"}


def test_stop_flushes_the_waiting_batch(
    static_tree: StaticTree, batches: Batches
) -> None:
    watcher = Watcher(debounce=3600, max_batch_seconds=3600)
    watcher.start()
    static_tree.write("late.css", b"late")
    wait_for(lambda: watcher.pending, timeout=TIMEOUT, message="the queued event")
    watcher.stop()
    assert batches.until("late.css")


def test_stop_waits_for_the_batch_under_way(static_tree: StaticTree) -> None:
    entered, release = threading.Event(), threading.Event()
    delivered: list[Batch] = []

    def slow_batch(names: Batch) -> bool:
        entered.set()
        release.wait(TIMEOUT)
        delivered.append(names)
        return True

    watcher = Watcher(debounce=0.01, on_batch=slow_batch)
    watcher.start()
    static_tree.write("slow.css", b"slow")
    assert entered.wait(TIMEOUT)
    delivered_when_stopped: list[int] = []

    def stop() -> None:
        watcher.stop()
        delivered_when_stopped.append(len(delivered))

    stopper = threading.Thread(target=stop)
    stopper.start()
    # Time for a stop() that did not wait to return; one that waits passes
    # however long this takes.
    stopper.join(timeout=0.5)
    release.set()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    # stop() returned after the batch under way, and nothing came after it.
    assert delivered_when_stopped == [len(delivered)]
    assert delivered[0] == ("slow.css",)


def test_a_thread_that_dies_starting_up_is_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under coverage a new thread can die in its start-up, before its target.
    starts: list[str] = []
    real_start = watcher_module._run_once_running

    def dies_once(running: threading.Event, target: Callable[[], None]) -> None:
        starts.append(threading.current_thread().name)
        if len(starts) == 1:
            raise RuntimeError("Cannot install a trace function while another ...")
        real_start(running, target)

    monkeypatch.setattr(watcher_module, "_run_once_running", dies_once)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    ran = threading.Event()
    thread = watcher_module._start_daemon(ran.set, "freshstatic-test")
    assert ran.wait(TIMEOUT)
    assert starts == ["freshstatic-test", "freshstatic-test"]
    thread.join(TIMEOUT)


def test_watchdogs_benign_reregistration_warning_is_silenced(
    static_tree: StaticTree,
) -> None:
    def warn(message: str) -> None:
        warnings.warn_explicit(
            message,
            RuntimeWarning,
            "inotify.py",
            365,
            module="watchdog.observers.inotify",
        )

    with warnings.catch_warnings(record=True) as caught:
        watcher = Watcher()
        watcher.start()
        try:
            warn(
                "Callback with id '140104810752080' already exists for watch "
                "<Watch: wd=7>. It will be Overwritten."
            )
            warn("Callback with id '1' does not exist for watch <Watch: wd=7>")
        finally:
            watcher.stop()
    assert [str(warning.message) for warning in caught] == [
        "Callback with id '1' does not exist for watch <Watch: wd=7>"
    ]


# -- observers, failures and restarts ------------------------------------------


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


class VanishingRootObserver(Observer):  # type: ignore[misc,valid-type]
    """The native observer; one root is deleted just before it is watched."""

    def __init__(self, vanishing: Path) -> None:
        super().__init__()
        self.vanishing: Path | None = vanishing

    def schedule(
        self, event_handler: FileSystemEventHandler, path: str, **options: Any
    ) -> ObservedWatch:
        if self.vanishing is not None and path == str(self.vanishing):
            shutil.rmtree(self.vanishing)
            self.vanishing = None  # once
        watch: ObservedWatch = super().schedule(event_handler, path, **options)
        return watch


def test_a_root_deleted_as_it_is_watched_is_watched_when_back(
    static_tree: StaticTree, batches: Batches, caplog: pytest.LogCaptureFixture
) -> None:
    root = ("", str(static_tree.plain))
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        watcher = Watcher(
            debounce=0.05,
            supervise_seconds=0.05,
            observer_class=lambda: VanishingRootObserver(static_tree.plain),
        )
        watcher.start()
    try:
        # A folder gone is no reason to give up native events.
        assert watcher.mode == "native events"
        assert "polling" not in caplog.text
        assert root not in watcher.roots
        assert ("vendor", str(static_tree.prefixed)) in watcher.roots
        static_tree.plain.mkdir()
        static_tree.write("back.css", b"back")
        batches.until("back.css")
        wait_for(lambda: root in watcher.roots, timeout=TIMEOUT, message="re-add")
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
            path = static_tree.write("r.css", b"one")
            wait_for(
                lambda: "receiver bug" in caplog.text,
                timeout=TIMEOUT,
                message="the logged error",
            )
        assert "Traceback" in caplog.text
    finally:
        static_changed.disconnect(explode)
    batches.until("r.css")  # the batch the failing receiver saw
    assert storage.url("r.css") == fresh_url("r.css", b"one")
    batches.settle(path, "r.css")
    assert storage.url("r.css") == fresh_url("r.css", b"one")
    static_tree.write("r.css", b"two")
    batches.until("r.css")
    assert storage.url("r.css") == fresh_url("r.css", b"two")


@pytest.mark.parametrize("thread", ["observer", "event reader"])
def test_a_dead_observer_is_restarted(
    static_tree: StaticTree,
    batches: Batches,
    caplog: pytest.LogCaptureFixture,
    thread: str,
) -> None:
    watcher = Watcher(debounce=0.05, supervise_seconds=0.05)
    watcher.start()
    try:
        observer = watcher.observer
        assert observer is not None
        # As if it had died (under a tracer, a thread can die starting up).
        dying = (
            observer if thread == "observer" else getattr(observer, "_inotify_fd", None)
        )
        if dying is None:
            pytest.skip("this watchdog reads inotify events in each emitter")
        with caplog.at_level(logging.ERROR, logger="freshstatic"):
            dying.stop()
            # Published once the new observer watches.
            wait_for(
                lambda: watcher.observer not in (None, observer),
                timeout=TIMEOUT,
                message="restart",
            )
        assert "stopped; restarting" in caplog.text
        storage = FreshStaticFilesStorage()
        static_tree.write("after.css", b"after")
        batches.until("after.css")
        assert storage.url("after.css") == fresh_url("after.css", b"after")
    finally:
        watcher.stop()


def test_a_root_deleted_and_recreated_is_watched_again(
    static_tree: StaticTree, batches: Batches
) -> None:
    root = ("", str(static_tree.plain))
    watcher = Watcher(debounce=0.05, supervise_seconds=0.05)
    watcher.start()
    try:
        shutil.rmtree(static_tree.plain)
        wait_for(lambda: root not in watcher.roots, timeout=TIMEOUT, message="drop")
        # Rebuilt at once (rm -rf dist && build): written before the folder is
        # watched again, or after; reported by name either way.
        static_tree.plain.mkdir()
        path = static_tree.write("rebuilt.css", b"one")
        storage = FreshStaticFilesStorage()
        batches.until("rebuilt.css")
        assert storage.url("rebuilt.css") == fresh_url("rebuilt.css", b"one")
        wait_for(lambda: root in watcher.roots, timeout=TIMEOUT, message="re-add")
        batches.settle(path, "rebuilt.css")
        assert storage.url("rebuilt.css") == fresh_url("rebuilt.css", b"one")
        static_tree.write("rebuilt.css", b"two")
        batches.until("rebuilt.css")
        assert storage.url("rebuilt.css") == fresh_url("rebuilt.css", b"two")
    finally:
        watcher.stop()


def test_start_is_idempotent_and_stop_joins(static_tree: StaticTree) -> None:
    watcher = Watcher()
    watcher.start()
    supervisor, observer = watcher.supervisor, watcher.observer
    watcher.start()
    assert (watcher.supervisor, watcher.observer) == (supervisor, observer)
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
                timeout=TIMEOUT,
                message="the retried rotation",
            )
        assert storage.url("o.css") == fresh_url("o.css", b"two")
    finally:
        watcher.stop()


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
            ok = ok and seen.wait(60)
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


# -- names and autostart ----------------------------------------------------------


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


INOTIFY_READ_EVENTS = {"IN_ACCESS": 0x1, "IN_CLOSE_NOWRITE": 0x10, "IN_OPEN": 0x20}


def inotify_masks() -> list[int]:
    """The event mask of every inotify watch this process holds (the kernel's
    own account, from /proc/self/fdinfo)."""
    masks = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        masks += [int(mask, 16) for mask in re.findall(r"\bmask:([0-9a-f]+)", info)]
    return masks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")
def test_the_kernel_is_asked_for_content_changes_only(
    static_tree: StaticTree, watcher: Watcher, batches: Batches
) -> None:
    """Serving a file opens and reads it: that must not wake the watcher."""
    static_tree.write("css/sub/site.css", b"a")
    wait_for(lambda: inotify_masks(), message="inotify watches")
    masks = inotify_masks()
    for name, bit in INOTIFY_READ_EVENTS.items():
        assert not any(mask & bit for mask in masks), name
    # Content changes are still asked for, and seen.
    assert all(mask & 0x2 for mask in masks)  # IN_MODIFY
    static_tree.write("css/sub/site.css", b"b")
    assert "css/sub/site.css" in reported(batches.until("css/sub/site.css"))
