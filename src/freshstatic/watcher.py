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
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any, NamedTuple

from django.conf import settings
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
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
# The only events asked of the kernel: content changes. Every read of a
# static file (each request the server answers) would otherwise wake the
# watcher twice (opened, closed without writing).
CONTENT_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
# Reads (our own hashing opens files), attribute changes and a folder's
# "modified" (its children report for themselves) change no content.
IGNORED_EVENT_TYPES = frozenset({"opened", "closed_no_write", "attrib"})
# A steady stream of events still flushes at least this often.
MAX_BATCH_SECONDS = 0.5
# How often the supervisor checks the observer and retries a failed rotation.
SUPERVISE_SECONDS = 1.0
# Used when native events are unavailable and FRESHSTATIC["POLL"] is unset.
FALLBACK_POLL_SECONDS = 1.0
# A thread that dies starting up (see _start_daemon) is started again.
THREAD_START_ATTEMPTS = 5
# watchdog registers a folder twice when a folder inside it is created while
# it adds the outer one's watches (mkdir -p, a copied tree), and warns that
# the callback "will be overwritten": by the very same callback. A race inside
# watchdog that loses nothing; not a message for a site's console.
WATCHDOG_REREGISTERED_WARNING = r"Callback with id .* already exists for watch"


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


class _Watched(NamedTuple):
    """A root folder being watched, and which folder it was when scheduled."""

    watch: ObservedWatch
    identity: tuple[int, int]


class Watcher:
    """
    Watch the static roots and invalidate on change.

    ``start()`` returns once the folders are watched; ``stop()`` joins every
    thread and delivers the batch still waiting, after which nothing more is
    delivered. ``poll`` (seconds) forces the polling observer; None follows
    ``FRESHSTATIC["POLL"]``.
    """

    def __init__(
        self,
        *,
        poll: float | None = None,
        debounce: float | None = None,
        observer_class: Callable[[], BaseObserver] = Observer,
        supervise_seconds: float = SUPERVISE_SECONDS,
        max_batch_seconds: float = MAX_BATCH_SECONDS,
        on_batch: Callable[[tuple[str, ...] | None], bool] | None = None,
    ) -> None:
        self._poll = poll
        self._debounce = debounce
        self._observer_class = observer_class
        self._supervise_seconds = supervise_seconds
        self._max_batch_seconds = max_batch_seconds
        self._on_batch = on_batch or _invalidate
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._observer: BaseObserver | None = None
        self._supervisor: threading.Thread | None = None
        self._fallback_reason: str | None = None
        self._handler = _Handler(self)
        # The roots being watched, published once their watches are in place:
        # a change made after a root appears here is seen.
        self.roots: list[tuple[str, str]] = []
        # The roots event paths are named through; ahead of self.roots while
        # a new root is being scheduled.
        self._event_roots: list[tuple[str, str]] = []
        self._watched: dict[str, _Watched] = {}
        self._unwatchable: dict[str, tuple[int, int]] = {}
        self.mode = ""
        # Debounce state, under _batch_lock: the names waiting, and when the
        # batcher thread delivers them (None: nothing waits).
        self._pending: set[str] = set()
        self._first_event = 0.0
        self._due: float | None = None
        self._batch_lock = threading.Lock()
        self._wake = threading.Condition(self._batch_lock)
        self._batcher: threading.Thread | None = None
        # Held while a batch is delivered: batches go out one at a time, in
        # order, and stop() waits for the one under way.
        self._deliver_lock = threading.RLock()
        self._rotation_pending = False

    # -- lifecycle --------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._supervisor is not None and self._supervisor.is_alive()

    @property
    def pending(self) -> frozenset[str]:
        """The names changed since the last batch, waiting for the next."""
        with self._batch_lock:
            return frozenset(self._pending)

    @property
    def observer(self) -> BaseObserver | None:
        """The watchdog observer watching now (replaced when it dies), or None."""
        return self._observer

    @property
    def supervisor(self) -> threading.Thread | None:
        """The thread that starts, checks and restarts the observer, or None."""
        return self._supervisor

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self._start_observer()
            self._batcher = _start_daemon(self._deliver_batches, "freshstatic-batches")
            self._supervisor = _start_daemon(self._supervise, "freshstatic-watcher")
        # Files may have changed while no watcher ran (a restart, a deploy):
        # hashes that a shared cache kept from before cannot be trusted.
        self._rotation_pending = not _rotate()

    def stop(self) -> None:
        with self._lock:
            with self._batch_lock:
                self._stopping.set()  # from here on, add() queues nothing
                self._wake.notify_all()
            self._stop_observer()
            supervisor, self._supervisor = self._supervisor, None
            batcher, self._batcher = self._batcher, None
        # Joined outside the lock, which the supervisor takes.
        for thread in (supervisor, batcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=10)
        # A batch still waiting for its debounce is not lost; one being
        # delivered right now is waited for. Nothing is delivered after this.
        self._flush()

    # -- the observer -----------------------------------------------------------

    def _start_observer(self) -> None:
        poll = self._poll if self._poll is not None else conf.POLL
        if poll is None:
            try:
                self._observe(self._observer_class())
            except OSError as exc:
                self._warn_fallback(exc)
                poll = conf.POLL or FALLBACK_POLL_SECONDS
            else:
                self.mode = "native events"
                return
        self._observe(PollingObserver(timeout=poll))
        self.mode = f"polling every {poll:g} s"

    def _observe(self, observer: BaseObserver) -> None:
        warnings.filterwarnings(
            "ignore",
            message=WATCHDOG_REREGISTERED_WARNING,
            category=RuntimeWarning,
            module=r"watchdog\.",
        )
        try:
            observer.start()
            # What the roots hold now is hashed afresh after start(): no
            # names to report for it.
            self._reconcile(observer, report=False)
        except BaseException:
            self._watched.clear()
            _stop_quietly(observer)
            raise
        self._observer = observer  # published once it watches
        logger.info(
            "Watching %d static folders for changes (%s) in process %d.",
            len(self.roots),
            type(observer).__name__,
            os.getpid(),
        )

    def _reconcile(self, observer: BaseObserver, *, report: bool) -> bool:
        """
        Watch each root that exists now, as the folder that is there now.

        A root that appears (created after start, deleted and rebuilt, a
        swapped symlink) is scheduled first and listed next: a file written
        before its watch existed is found by the listing, one written after
        by an event, and both are reported by name before the root is
        published in ``roots``. Returns True when changes may have been
        missed that no name covers (a root that vanished).
        """
        desired = watched_roots()
        # The folder itself is watched, not a symlink to it: a watch on the
        # link would see nothing of the files directly inside.
        targets = {folder: os.path.realpath(folder) for _prefix, folder in desired}
        identities = {target: _identity(target) for target in targets.values()}
        self._event_roots = list(
            dict.fromkeys(
                [*desired, *((prefix, targets[folder]) for prefix, folder in desired)]
            )
        )
        alive = {emitter.watch for emitter in observer.emitters if _running(emitter)}
        missed = False
        for target, watched in list(self._watched.items()):
            identity = identities.get(target)
            if identity == watched.identity and watched.watch in alive:
                continue
            # Deleted, replaced by another folder, or its emitter stopped (a
            # deleted root stops it).
            _unschedule_quietly(observer, watched.watch)
            del self._watched[target]
            missed = missed or identity is None
        names: set[str] = set()
        for target, identity in identities.items():
            if (
                target in self._watched
                or identity is None
                or self._unwatchable.get(target) == identity
            ):
                continue
            try:
                watch = observer.schedule(
                    self._handler, target, recursive=True, event_filter=CONTENT_EVENTS
                )
            except (FileNotFoundError, NotADirectoryError):
                continue  # gone again; scheduled when it is back
            except OSError as exc:
                if not isinstance(observer, PollingObserver):
                    raise  # the caller falls back to polling
                logger.warning("Cannot watch the static folder %s: %s", target, exc)
                self._unwatchable[target] = identity
                continue
            self._watched[target] = _Watched(watch, identity)
            if report:
                names.update(_files_under(target, self._event_roots))
        if names:
            self.add(names)
        self.roots = [root for root in desired if targets[root[1]] in self._watched]
        return missed

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
        self._watched.clear()
        if observer is not None:
            _stop_quietly(observer)

    def _supervise(self) -> None:
        while not self._stopping.wait(self._supervise_seconds):
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    if self._batcher is not None and not self._batcher.is_alive():
                        logger.error("The static file batcher stopped; restarting it.")
                        self._batcher = _start_daemon(
                            self._deliver_batches, "freshstatic-batches"
                        )
                    missed = self._check_observer()
                if missed:
                    # Whatever changed while nothing watched is unknown.
                    self._deliver_unless_stopping(None)
                if self._rotation_pending:
                    self._retry_rotation()
                _verify_caches()
            except Exception:
                logger.exception("The static file watcher failed; restarting it.")

    def _check_observer(self) -> bool:
        observer = self._observer
        if observer is not None and _running(observer):
            try:
                return self._reconcile(observer, report=True)
            except OSError as exc:
                if _running(observer):  # a new root over the inotify limits
                    logger.warning("Watching a new static folder failed (%s).", exc)
                else:  # it stopped while the roots were being watched
                    logger.error("The static file watcher stopped; restarting it.")
        else:
            logger.error("The static file watcher stopped; restarting it.")
        self._stop_observer()
        self._start_observer()
        return True

    # -- batches ----------------------------------------------------------------

    def add(self, names: Iterable[str]) -> None:
        """Queue changed names; they are delivered after a quiet period."""
        debounce = self._debounce if self._debounce is not None else conf.DEBOUNCE
        with self._batch_lock:
            if self._stopping.is_set():
                return
            now = monotonic()
            if not self._pending:
                self._first_event = now
            self._pending.update(names)
            # Each event moves the delivery back, up to the batch's limit.
            self._due = min(now + debounce, self._first_event + self._max_batch_seconds)
            self._wake.notify()

    def _deliver_batches(self) -> None:
        """The batcher thread: deliver each batch once it is due."""
        while True:
            with self._batch_lock:
                while not self._stopping.is_set():
                    if self._due is None:
                        self._wake.wait()
                    elif (remaining := self._due - monotonic()) > 0:
                        self._wake.wait(remaining)
                    else:
                        break
                else:
                    return  # stop() delivers what waits
            try:
                self._flush()
            except Exception:  # pragma: no cover (_deliver logs what fails)
                logger.exception("Delivering a batch of static changes failed.")

    def _flush(self) -> None:
        with self._deliver_lock:
            with self._batch_lock:
                names = tuple(sorted(self._pending))
                self._pending.clear()
                self._due = None
            self._deliver(names)

    def _deliver_unless_stopping(self, names: tuple[str, ...] | None) -> None:
        with self._deliver_lock:
            if not self._stopping.is_set():
                self._deliver(names)

    def _deliver(self, names: tuple[str, ...] | None) -> None:
        if names == ():
            return
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
        roots = self.watcher._event_roots
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


def _start_daemon(target: Callable[[], None], name: str) -> threading.Thread:
    """
    Start a daemon thread running ``target``; return once it runs.

    A thread can die before it runs anything: under a tracer (coverage sets
    one for every thread), CPython's thread start-up fails with "Cannot
    install a trace function while another trace function is being
    installed" when another thread starts at that moment. Such a thread is
    started again.
    """
    for _attempt in range(THREAD_START_ATTEMPTS):
        running = threading.Event()
        thread = threading.Thread(
            target=_run_once_running, args=(running, target), name=name, daemon=True
        )
        thread.start()
        while thread.is_alive() and not running.wait(0.01):
            continue
        if running.is_set():
            return thread
        logger.debug("The thread %s died starting up; starting it again.", name)
    raise RuntimeError(f"The thread {name} died starting up.")


def _run_once_running(running: threading.Event, target: Callable[[], None]) -> None:
    running.set()
    target()


def _running(thread: threading.Thread) -> bool:
    """Whether a watchdog thread runs, with the inotify reader it relies on."""
    keep_running = getattr(thread, "should_keep_running", None)
    if not thread.is_alive() or (callable(keep_running) and not keep_running()):
        return False  # dead, or told to stop
    # The reader is the observer's (watchdog 7) or each emitter's (earlier
    # versions). Like any thread it can die starting up (see _start_daemon),
    # and then no event ever comes.
    for name in ("_inotify_fd", "_inotify"):
        reader = getattr(thread, name, None)
        if isinstance(reader, threading.Thread) and not reader.is_alive():
            return False
    return True


def _identity(folder: str) -> tuple[int, int] | None:
    """Which folder is at ``folder`` now (None: no folder)."""
    try:
        status = os.stat(folder)
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISDIR(status.st_mode) else None


def _unschedule_quietly(observer: BaseObserver, watch: ObservedWatch) -> None:
    try:
        observer.unschedule(watch)
    except Exception:
        logger.debug("Unscheduling %s failed.", watch.path, exc_info=True)


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


def _verify_caches() -> None:
    """Rotate after the shared cache comes back (empty, or from a snapshot)."""
    from freshstatic.cache import verify_all

    verify_all()


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
