"""
The file watcher: watchdog over every static root, debounced into batches.

Each batch rotates the cache generation (every process sharing the cache
re-hashes), clears this process's memo and sends ``static_changed`` with the
static names that changed. One watcher per process, owned by this module.
"""

from __future__ import annotations

import atexit
import errno
import fnmatch
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any

from django.conf import settings
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from freshstatic import locations
from freshstatic.conf import conf

logger = logging.getLogger("freshstatic")

# Editors' swap, backup, lock and temporary files: never static content.
IGNORED_PATTERNS = (
    "*.swp",
    "*.swo",
    "*.swx",
    "*.swpx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*___jb_tmp___",
    "*___jb_old___",
    "*.tmp",
    ".*.kate-swp",
    ".goutputstream-*",
    ".DS_Store",
)
# Reads (our own hashing opens files), attribute changes and a folder's
# "modified" (its children report for themselves) change no content.
IGNORED_EVENT_TYPES = frozenset({"opened", "closed_no_write", "attrib"})
# A steady stream of events still flushes at least this often.
MAX_BATCH_SECONDS = 0.5
# How often the supervisor checks the observer and retries a failed rotation.
SUPERVISE_SECONDS = 1.0
# Used when native events are unavailable and FRESHSTATIC["POLL"] is unset.
FALLBACK_POLL_SECONDS = 1.0


def watched_roots() -> list[tuple[str, str]]:
    """(prefix, folder) for every existing finder root, and STATIC_ROOT."""
    roots = list(locations.finder_roots())
    if settings.STATIC_ROOT:
        roots.append(("", os.path.abspath(settings.STATIC_ROOT)))
    unique = dict.fromkeys(
        (prefix, root) for prefix, root in roots if os.path.isdir(root)
    )
    return list(unique)


def path_to_name(path: str, roots: Iterable[tuple[str, str]]) -> str | None:
    """The static name of ``path``, through the deepest root it is under."""
    best: tuple[str, str] | None = None
    for prefix, root in roots:
        if path.startswith(root.rstrip(os.sep) + os.sep) and (
            best is None or len(root) > len(best[1])
        ):
            best = (prefix, root)
    if best is None:
        return None
    prefix, root = best
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return f"{prefix}/{relative}" if prefix else relative


def is_ignored(path: str) -> bool:
    basename = os.path.basename(path)
    return any(fnmatch.fnmatchcase(basename, pattern) for pattern in IGNORED_PATTERNS)


class Watcher:
    """
    Watch the static roots and invalidate on change.

    ``start()`` returns once the folders are watched; ``stop()`` joins every
    thread. ``poll`` (seconds) forces the polling observer; None follows
    ``FRESHSTATIC["POLL"]``.
    """

    def __init__(
        self,
        *,
        poll: float | None = None,
        debounce: float | None = None,
        observer_class: Callable[[], BaseObserver] = Observer,
        supervise_seconds: float = SUPERVISE_SECONDS,
        on_batch: Callable[[tuple[str, ...] | None], bool] | None = None,
    ) -> None:
        self._poll = poll
        self._debounce = debounce
        self._observer_class = observer_class
        self._supervise_seconds = supervise_seconds
        self._on_batch = on_batch or _invalidate
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._observer: BaseObserver | None = None
        self._supervisor: threading.Thread | None = None
        self._fallback_reason: str | None = None
        self.roots: list[tuple[str, str]] = []
        self.mode = ""
        # Debounce state.
        self._pending: set[str] = set()
        self._first_event = 0.0
        self._timer: threading.Timer | None = None
        self._batch_lock = threading.Lock()
        self._rotation_pending = False

    # -- lifecycle --------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._supervisor is not None and self._supervisor.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self._start_observer()
            self._supervisor = threading.Thread(
                target=self._supervise, name="freshstatic-watcher", daemon=True
            )
            self._supervisor.start()
        # Files may have changed while no watcher ran (a restart, a deploy):
        # hashes that a shared cache kept from before cannot be trusted.
        self._rotation_pending = not _rotate()

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            with self._batch_lock:
                timer, self._timer = self._timer, None
                if timer is not None:
                    timer.cancel()
            self._stop_observer()
            supervisor, self._supervisor = self._supervisor, None
        # Joined outside the lock, which the supervisor takes.
        for thread in (supervisor, timer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=10)
        self._flush()  # a batch still waiting for its debounce is not lost

    # -- the observer -----------------------------------------------------------

    def _start_observer(self) -> None:
        self.roots = watched_roots()
        handler = _Handler(self)
        poll = self._poll if self._poll is not None else conf.POLL
        if poll is None:
            observer = self._observer_class()
            try:
                self._schedule_and_start(observer, handler)
            except OSError as exc:
                _stop_quietly(observer)
                self._warn_fallback(exc)
                poll = conf.POLL or FALLBACK_POLL_SECONDS
            else:
                self._observer = observer
                self.mode = "native events"
                return
        observer = PollingObserver(timeout=poll)
        self._schedule_and_start(observer, handler)
        self._observer = observer
        self.mode = f"polling every {poll:g} s"

    def _schedule_and_start(self, observer: BaseObserver, handler: _Handler) -> None:
        for _prefix, root in self.roots:
            observer.schedule(handler, root, recursive=True)
        observer.start()
        logger.info(
            "Watching %d static folders for changes (%s) in process %d.",
            len(self.roots),
            type(observer).__name__,
            os.getpid(),
        )

    def _warn_fallback(self, exc: OSError) -> None:
        reason = {
            errno.ENOSPC: "the inotify watch limit "
            "(fs.inotify.max_user_watches) is reached",
            errno.EMFILE: "the inotify instance limit "
            "(fs.inotify.max_user_instances) is reached",
        }.get(exc.errno or 0, f"{type(exc).__name__}: {exc}")
        if self._fallback_reason != reason:
            self._fallback_reason = reason
            logger.warning(
                "Native file events are unavailable (%s); watching static files "
                "by polling instead. Set FRESHSTATIC['POLL'] to choose the interval "
                "in seconds (True for 1 s), or raise the limit.",
                reason,
            )

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            _stop_quietly(observer)

    def _restart_observer(self) -> None:
        self._stop_observer()
        self._start_observer()
        # Whatever changed while it was not watched is unknown.
        self._batch(None)

    def _observer_healthy(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in observer.emitters)

    def _supervise(self) -> None:
        while not self._stopping.wait(self._supervise_seconds):
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    if not self._observer_healthy():
                        logger.error("The static file watcher stopped; restarting it.")
                        self._restart_observer()
                    elif watched_roots() != self.roots:
                        # A root deleted and recreated (rm -rf dist && build),
                        # or created after start (STATIC_ROOT).
                        logger.info("The static folders changed; watching them anew.")
                        self._restart_observer()
                if self._rotation_pending:
                    self._retry_rotation()
            except Exception:
                logger.exception("The static file watcher failed; restarting it.")

    # -- batches ----------------------------------------------------------------

    def add(self, names: Iterable[str]) -> None:
        """Queue changed names; they are flushed after a quiet period."""
        debounce = self._debounce if self._debounce is not None else conf.DEBOUNCE
        with self._batch_lock:
            if self._stopping.is_set():
                return
            now = monotonic()
            if not self._pending:
                self._first_event = now
            self._pending.update(names)
            delay = max(0.0, min(debounce, self._first_event + MAX_BATCH_SECONDS - now))
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self._flush)
            self._timer.daemon = True
            self._timer.name = "freshstatic-debounce"
            self._timer.start()

    def _flush(self) -> None:
        with self._batch_lock:
            names = tuple(sorted(self._pending))
            self._pending.clear()
            self._timer = None
        if names:
            self._batch(names)

    def _batch(self, names: tuple[str, ...] | None) -> None:
        try:
            rotated = self._on_batch(names)
        except Exception:
            logger.exception("Invalidating static hashes after a change failed.")
            rotated = False
        if not rotated:
            # The shared cache missed this generation: retry until it takes it.
            self._rotation_pending = True

    def _retry_rotation(self) -> None:
        # Cleared first: a failure recorded meanwhile must not be overwritten.
        self._rotation_pending = False
        if _rotate():
            logger.warning("Static hashes invalidated after the cache came back.")
        else:
            self._rotation_pending = True


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            names = self.names(event)
            if names:
                self.watcher.add(names)
        except Exception:  # never let the observer thread die
            logger.exception("Handling the file event %r failed.", event)

    def names(self, event: FileSystemEvent) -> set[str]:
        if event.event_type in IGNORED_EVENT_TYPES or (
            event.is_directory and event.event_type == "modified"
        ):
            return set()
        paths = [event.src_path]
        if event.event_type == "moved":
            paths.append(event.dest_path)
        names: set[str] = set()
        roots = self.watcher.roots
        for raw in paths:
            path = os.fsdecode(raw)
            if is_ignored(path):
                continue
            name = path_to_name(path, roots)
            if name is None:
                continue
            if event.is_directory and os.path.isdir(path):
                # A folder created or moved in: every file in it is new (an
                # empty one changes no URL).
                names.update(_files_under(path, roots))
            else:
                names.add(name)
        return names


def _files_under(folder: str, roots: list[tuple[str, str]]) -> set[str]:
    names: set[str] = set()
    for directory, _dirs, files in os.walk(folder):
        for filename in files:
            path = os.path.join(directory, filename)
            name = path_to_name(path, roots)
            if name is not None and not is_ignored(path):
                names.add(name)
    return names


def _stop_quietly(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=10)
    except Exception:
        logger.debug("Stopping the file observer failed.", exc_info=True)


def _invalidate(names: tuple[str, ...] | None) -> bool:
    import freshstatic

    return freshstatic.invalidate(names)


def _rotate() -> bool:
    """Start a new generation, without a static_changed signal."""
    from django.core.files.storage import storages

    from freshstatic.cache import rotate_all

    try:
        storages["staticfiles"]  # so that its cache is known to rotate_all()
        return rotate_all()
    except Exception:
        logger.exception("Invalidating static hashes failed.")
        return False


# -- the process's watcher ------------------------------------------------------

_watcher: Watcher | None = None
_watcher_options: dict[str, Any] = {}
_watcher_lock = threading.Lock()


def get() -> Watcher | None:
    """This process's watcher, if one was started."""
    return _watcher


def start(**options: Any) -> Watcher:
    """Start this process's watcher (idempotent)."""
    global _watcher, _watcher_options
    with _watcher_lock:
        if _watcher is None:
            _watcher_options = options
            _watcher = Watcher(**options)
        _watcher.start()
        return _watcher


def stop() -> None:
    """Stop this process's watcher and wait for its threads."""
    global _watcher
    with _watcher_lock:
        watcher, _watcher = _watcher, None
    if watcher is not None:
        watcher.stop()


def _restart_after_fork() -> None:
    # Threads do not survive fork(): a preloaded master's watcher is dead in
    # every worker. Start a new one there, with fresh locks.
    global _watcher, _watcher_lock
    _watcher_lock = threading.Lock()
    if _watcher is not None:
        _watcher = None
        start(**_watcher_options)


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_restart_after_fork)
atexit.register(stop)


def management_command(argv: list[str]) -> str | None:
    """The management command this process runs, or None (a WSGI server...)."""
    if not argv:
        return None
    program = os.path.basename(argv[0])
    if program in {"manage.py", "django-admin", "django-admin.py"} or argv[0].endswith(
        os.path.join("django", "__main__.py")
    ):
        return argv[1] if len(argv) > 1 else "help"
    return None


def should_autostart() -> bool:
    """Whether this process should start a watcher (FRESHSTATIC["WATCH"])."""
    mode = conf.WATCH
    if mode is False:
        return False
    command = management_command(sys.argv)
    if command == "runserver":
        # Under the autoreloader, the parent only restarts the child that serves.
        return (
            os.environ.get(DJANGO_AUTORELOAD_ENV) == "true" or "--noreload" in sys.argv
        )
    if command is not None:
        return False  # migrate, check, shell, test, watchstatic...
    return mode is True
