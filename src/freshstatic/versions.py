"""
The version store: the bytes of every version served, kept in a folder
(``FRESHSTATIC["VERSIONS"]``), so that a URL whose ``v`` names an older
version still gets those exact bytes, and so that a new version can travel
as a delta against one a browser already has (``freshstatic.delta``).

Every name in the folder is a digest, and nothing else is ever opened::

    objects/<2 hex>/<62 hex>   the bytes; the name is their SHA-256
    refs/<2 hex>/<62 hex>      the SHA-256 (in hex) of the bytes served for a
                               static name's version, then, for a module
                               whose version also covers its imports, what it
                               covers (freshstatic.served.digest_of) a line
                               each; the name is the SHA-256 of (algorithm,
                               static name, v)

Content-addressed: processes and releases that share the folder and write
the same version write the same bytes under the same name, each through its
own temporary file renamed into place, so no lock is needed and a reader
never sees a partial file. Every read checks the bytes against their name,
and the version's digest computed anew from them against ``v``, and drops an
entry that does not match. The store is bounded by the bytes it holds and by
the age of its entries (since last used), least recently used first out;
pruning tolerates readers and writers in other processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from freshstatic.conf import conf
from freshstatic.log import warn_once
from freshstatic.served import Served, covering

if TYPE_CHECKING:
    from freshstatic.served import ServedFiles

logger = logging.getLogger("freshstatic")

# The largest version kept: larger files are served, never stored (their
# old versions are not kept).
FILE_MAX_BYTES = 32 * 1024 * 1024
# How often an entry in use has its last-use time refreshed (its file's
# mtime, which least-recently-used eviction and MAX_AGE read).
TOUCH_INTERVAL_SECONDS = 60 * 60.0
# A process prunes after writing this share of MAX_BYTES (or 1 MiB if more),
# and at most this often otherwise.
PRUNE_AFTER_SHARE = 16
PRUNE_INTERVAL_SECONDS = 60 * 60.0
# Pruning for size stops below the bound, so that not every write prunes.
PRUNE_TARGET_SHARE = 0.9
# A temporary file older than this belongs to a writer that died.
TEMPORARY_MAX_AGE_SECONDS = 60 * 60.0
TEMPORARY_PREFIX = ".tmp-"
# How many versions this process remembers having written (for each, the
# time it last wrote or touched it): a few hundred bytes each.
REMEMBERED_MAX = 10_000
# The largest name of a version (a module covering many imports lists them
# there); a version that would need more is not kept.
REF_MAX_BYTES = 64 * 1024

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[0-9a-f]{6,128}")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


@dataclass(frozen=True)
class Stored:
    """A version found in the store."""

    data: bytes
    # The SHA-256 of ``data``, in hex: its name in the store.
    sha256: str
    # Its version's digest in the algorithm asked for (``v`` is its
    # beginning), which also covers ``covered`` (a module's imports).
    digest: str
    covered: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    """What the store holds: versions, names and bytes on disk."""

    objects: int
    refs: int
    bytes: int


@dataclass(frozen=True)
class Pruned:
    """What a prune removed and kept (files, and bytes on disk)."""

    removed: int
    removed_bytes: int
    kept: int
    kept_bytes: int


@dataclass(frozen=True)
class _Entry:
    path: str
    mtime: float
    size: int


def _disk_bytes(info: os.stat_result) -> int:
    """What a file takes on disk (its blocks), or its length."""
    blocks = getattr(info, "st_blocks", None)
    return info.st_size if blocks is None else max(blocks * 512, info.st_size)


class VersionStore:
    """The version store in ``path``, bounded by ``max_bytes`` on disk and
    ``max_age_seconds`` since last use (None: no bound of that kind)."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int | None,
        max_age_seconds: float | None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        # What this process wrote or touched lately (ref name -> time).
        self._remembered: dict[str, float] = {}
        # Bytes this process wrote since its last prune began, and what that
        # prune left (None: no prune yet).
        self._written_bytes = 0
        self._known_bytes: int | None = None
        self._last_prune = time.monotonic()
        self._pruning = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VersionStore({self.path!r})"

    # -- names -----------------------------------------------------------------

    def _object_path(self, sha256: str) -> str:
        return os.path.join(self.path, "objects", sha256[:2], sha256[2:])

    def _ref_name(self, algorithm: str, name: str, version: str) -> str:
        key = "\0".join((algorithm, name, version)).encode("utf-8", "surrogatepass")
        return hashlib.sha256(key).hexdigest()

    def _ref_path(self, ref: str) -> str:
        return os.path.join(self.path, "refs", ref[:2], ref[2:])

    def max_file_bytes(self) -> int:
        """The largest version kept: a quarter of the bound at most."""
        if self.max_bytes is None:
            return FILE_MAX_BYTES
        return min(FILE_MAX_BYTES, self.max_bytes // 4)

    # -- writing ---------------------------------------------------------------

    def put(
        self,
        name: str,
        data: bytes,
        *,
        algorithm: str,
        version: str,
        covered: tuple[str, ...] = (),
    ) -> bool:
        """
        Keep ``data`` as version ``version`` of static name ``name``: the
        beginning of the digest in ``algorithm`` of ``data`` and ``covered``
        (what a module's version covers beside its bytes, see
        freshstatic.served.digest_of). False if it is not kept: too large,
        ``version`` not that digest, or the folder cannot be written (logged
        once). Cheap when it is kept already: this process remembers what it
        wrote, and refreshes its last use at most hourly.
        """
        if len(data) > self.max_file_bytes() or not _VERSION.fullmatch(version):
            return False
        ref = self._ref_name(algorithm, name, version)
        now = time.monotonic()
        with self._lock:
            last = self._remembered.get(ref)
        if last is not None and now - last < TOUCH_INTERVAL_SECONDS:
            return True
        sha256 = hashlib.sha256(data).hexdigest()
        digest = _digest(algorithm, data, sha256, covered)
        if digest is None or not digest.startswith(version):
            return False  # never keep bytes under a version they are not
        content = "\n".join((sha256, *covered)).encode("utf-8", "surrogatepass")
        if len(content) > REF_MAX_BYTES:
            return False
        try:
            written = self._keep(self._object_path(sha256), data)
            written += self._keep(self._ref_path(ref), content)
        except OSError as exc:
            warn_once(
                f"{self.path}\0unwritable",
                "The version store %r cannot be written (%s); versions are "
                "served but not kept.",
                self.path,
                exc,
            )
            return False
        with self._lock:
            if len(self._remembered) >= REMEMBERED_MAX:
                self._remembered.clear()
            self._remembered[ref] = now
            self._written_bytes += written
        self._maybe_prune()
        return True

    def _keep(self, path: str, data: bytes) -> int:
        """Make sure ``path`` holds ``data``; the bytes written (0: it did)."""
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISREG(info.st_mode) and info.st_size == len(data):
                _touch(path, info)
                return 0
        _write_atomically(path, data)
        return len(data)

    # -- reading ---------------------------------------------------------------

    def find(self, name: str, version: str, *, algorithm: str) -> Stored | None:
        """
        The bytes kept as version ``version`` of static name ``name`` (in
        ``algorithm``), checked against both their names; None if none are.
        """
        if not _VERSION.fullmatch(version):
            return None
        ref_path = self._ref_path(self._ref_name(algorithm, name, version))
        content = _read(ref_path, REF_MAX_BYTES)
        if content is None:
            return None
        sha256, covered = _parse_ref(content)
        data = self.get(sha256) if _HEX_DIGEST.fullmatch(sha256) else None
        digest = None
        if data is not None:
            digest = _digest(algorithm, data, sha256, covered)
        if data is None or digest is None or not digest.startswith(version):
            _drop(ref_path)  # corrupted, or its version was evicted
            return None
        _touch(ref_path)
        return Stored(data, sha256, digest, covered)

    def get(self, sha256: str) -> bytes | None:
        """The bytes whose SHA-256 is ``sha256`` (hex), or None. Bytes that
        do not match their name are dropped, never returned."""
        if not _HEX_DIGEST.fullmatch(sha256):
            return None
        path = self._object_path(sha256)
        data = _read(path, self.max_file_bytes())
        if data is None:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            logger.warning(
                "The version store %r held a corrupted entry %s; it was removed.",
                self.path,
                sha256,
            )
            _drop(path)
            return None
        _touch(path)
        return data

    def has(self, sha256: str) -> bool:
        """Whether bytes named ``sha256`` are kept (not checked: get() does)."""
        return bool(_HEX_DIGEST.fullmatch(sha256)) and os.path.isfile(
            self._object_path(sha256)
        )

    # -- bounds ----------------------------------------------------------------

    def usage(self) -> Usage:
        objects = list(self._entries("objects"))
        refs = list(self._entries("refs"))
        return Usage(
            len(objects),
            len(refs),
            sum(entry.size for entry in objects) + sum(entry.size for entry in refs),
        )

    def prune(self, now: float | None = None) -> Pruned:
        """
        Remove what is beyond the bounds: entries unused for longer than
        ``max_age_seconds``, then the least recently used versions until the
        store is under ``max_bytes``, names whose version is gone, and
        temporary files left by writers that died. An entry used while the
        prune runs (by another process) is kept.
        """
        now = time.time() if now is None else now
        with self._lock:
            written_before = self._written_bytes
        removed = removed_bytes = 0
        for entry in self._entries(None, temporary=True):
            if entry.mtime < now - TEMPORARY_MAX_AGE_SECONDS and _unlink_if_unused(
                entry
            ):
                removed += 1
                removed_bytes += entry.size
        objects = list(self._entries("objects"))
        refs = list(self._entries("refs"))
        if self.max_age_seconds is not None:
            oldest = now - self.max_age_seconds
            for entries in (objects, refs):
                for entry in [entry for entry in entries if entry.mtime < oldest]:
                    if _unlink_if_unused(entry):
                        entries.remove(entry)
                        removed += 1
                        removed_bytes += entry.size
        total = sum(entry.size for entry in objects) + sum(entry.size for entry in refs)
        if self.max_bytes is not None and total > self.max_bytes:
            target = self.max_bytes * PRUNE_TARGET_SHARE
            for entry in sorted(objects, key=lambda entry: entry.mtime):
                if total <= target:
                    break
                if _unlink_if_unused(entry):
                    objects.remove(entry)
                    total -= entry.size
                    removed += 1
                    removed_bytes += entry.size
        kept_objects = {_name_of(entry.path) for entry in objects}
        for entry in list(refs):
            content = _read(entry.path, REF_MAX_BYTES)
            sha256 = _parse_ref(content)[0] if content else ""
            gone = sha256 not in kept_objects and not self.has(sha256)
            if gone and _drop(entry.path):
                refs.remove(entry)
                removed += 1
                removed_bytes += entry.size
        kept = objects + refs
        kept_bytes = sum(entry.size for entry in kept)
        with self._lock:
            self._written_bytes -= written_before  # what was written meanwhile stays
            self._known_bytes = kept_bytes
            self._last_prune = time.monotonic()
            self._remembered.clear()  # some may be gone: write them again
        return Pruned(removed, removed_bytes, len(kept), kept_bytes)

    def _due(self) -> bool:
        """Whether this process should prune (its lock held): at its first
        write, once what it wrote takes the store over its bound (as far as
        it knows) or past a share of it (others write too), or hourly."""
        written = self._written_bytes
        threshold = max((self.max_bytes or 0) // PRUNE_AFTER_SHARE, 1024 * 1024)
        over = (
            self.max_bytes is not None
            and self._known_bytes is not None
            and written > 0
            and self._known_bytes + written > self.max_bytes
        )
        return (
            self._known_bytes is None
            or over
            or written >= threshold
            or time.monotonic() - self._last_prune >= PRUNE_INTERVAL_SECONDS
        )

    def _maybe_prune(self) -> None:
        """Prune in a thread (one at a time) when due."""
        with self._lock:
            if self._pruning or not self._due():
                return
            self._pruning = True
        thread = threading.Thread(
            target=self._prune_in_background, name="freshstatic-versions", daemon=True
        )
        thread.start()

    def _prune_in_background(self) -> None:
        while True:
            try:
                self.prune()
            except Exception:  # a prune must never take anything down
                logger.exception("Pruning the version store %r failed.", self.path)
                with self._lock:
                    self._pruning = False
                return
            with self._lock:
                # Writes made while it ran may make another one due.
                if not self._due():
                    self._pruning = False
                    return

    def _entries(
        self, kind: str | None, *, temporary: bool = False
    ) -> Iterator[_Entry]:
        """The files of ``kind`` ("objects", "refs"; None: both), or the
        temporary files, by their names (nothing else is looked at)."""
        for folder in ("objects", "refs") if kind is None else (kind,):
            top = os.path.join(self.path, folder)
            try:
                shards = [entry for entry in os.scandir(top) if _is_shard(entry.name)]
            except OSError:
                continue
            for shard in shards:
                try:
                    files = list(os.scandir(shard.path))
                except OSError:
                    continue
                for file in files:
                    wanted = (
                        file.name.startswith(TEMPORARY_PREFIX)
                        if temporary
                        else _is_rest_of_digest(file.name)
                    )
                    if not wanted:
                        continue
                    try:
                        info = file.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        yield _Entry(file.path, info.st_mtime, _disk_bytes(info))

    def check_writable(self) -> str | None:
        """Why the folder cannot be written, or None if it can (it is
        created if missing; a file is written and removed)."""
        try:
            os.makedirs(self.path, exist_ok=True)
            probe = os.path.join(
                self.path, f"{TEMPORARY_PREFIX}check-{secrets.token_hex(6)}"
            )
            os.close(os.open(probe, _CREATE_FLAGS, 0o644))
            os.unlink(probe)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pruning = False


def _name_of(path: str) -> str:
    """The digest an entry's path spells (shard + file name)."""
    shard, rest = os.path.split(path)
    return os.path.basename(shard) + rest


def _is_shard(name: str) -> bool:
    return len(name) == 2 and all(char in "0123456789abcdef" for char in name)


def _is_rest_of_digest(name: str) -> bool:
    return len(name) == 62 and all(char in "0123456789abcdef" for char in name)


def _digest(
    algorithm: str, data: bytes, sha256: str, covered: tuple[str, ...]
) -> str | None:
    """The digest of the version of bytes ``data`` (whose SHA-256 is
    ``sha256``) that also covers ``covered``; None for an unknown algorithm."""
    try:
        own = (
            sha256
            if algorithm == "sha256"
            else hashlib.new(algorithm, data).hexdigest()
        )
        return covering(algorithm, own, covered)
    except (ValueError, TypeError):
        return None


def _parse_ref(content: bytes) -> tuple[str, tuple[str, ...]]:
    """A version's name in the store: the SHA-256 of its bytes, and what it
    covers beside them ("" for a garbled name, which names no bytes)."""
    try:
        text = content.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return "", ()
    sha256, _newline, rest = text.partition("\n")
    return sha256, tuple(rest.split("\n")) if rest else ()


def _read(path: str, max_bytes: int) -> bytes | None:
    """A regular file's bytes (never through a symlink), or None."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks = []
        remaining = info.st_size + 1  # one more: a file that grew is refused
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) <= max_bytes else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _write_atomically(path: str, data: bytes) -> None:
    """Write a temporary file beside ``path``, flush it to disk, rename it
    over ``path``: readers see the old file, or the whole new one."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(
        folder, f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    )
    fd = os.open(temporary, _CREATE_FLAGS, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # On disk before the rename: a power cut never leaves a torn file
            # under a digest's name (one would be caught on read anyway).
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        _drop(temporary)
        raise


def _touch(path: str, info: os.stat_result | None = None) -> None:
    """Mark ``path`` as used now, at most hourly (its mtime)."""
    try:
        if info is None:
            info = os.stat(path, follow_symlinks=False)
        if time.time() - info.st_mtime >= TOUCH_INTERVAL_SECONDS:
            os.utime(path, follow_symlinks=False)
    except (OSError, NotImplementedError):
        pass  # gone meanwhile, or read-only: only its age is less exact


def _unlink_if_unused(entry: _Entry) -> bool:
    """Remove ``entry`` unless it was used since it was listed."""
    try:
        if os.stat(entry.path, follow_symlinks=False).st_mtime != entry.mtime:
            return False
    except OSError:
        return False
    return _drop(entry.path)


def _drop(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


# -- the store of the settings ------------------------------------------------------


# Stores by (path, bounds): each remembers what its process wrote.
_stores: dict[tuple[str, int | None, float | None], VersionStore] = {}
_stores_lock = threading.Lock()
STORES_MAX = 8


def _store(path: str, max_bytes: int | None, max_age: float | None) -> VersionStore:
    key = (path, max_bytes, max_age)
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            if len(_stores) >= STORES_MAX:  # settings changed often (tests)
                _stores.clear()
            found = _stores[key] = VersionStore(
                path, max_bytes=max_bytes, max_age_seconds=max_age
            )
        return found


def configured_store() -> VersionStore | None:
    """The store ``FRESHSTATIC["VERSIONS"]`` names, used or not (None if
    it names none): what ``hashstatic --prune-versions`` and the checks use."""
    setting = conf.VERSIONS
    if setting is None:
        return None
    return _store(setting.path, setting.max_bytes, setting.max_age_seconds)


def store() -> VersionStore | None:
    """The store in use: configured and enabled ("auto": when DEBUG is off),
    or None."""
    setting = conf.VERSIONS
    if setting is None:
        return None
    enabled = not settings.DEBUG if setting.enabled == "auto" else setting.enabled
    if not enabled:
        return None
    return _store(setting.path, setting.max_bytes, setting.max_age_seconds)


def _reset_after_fork() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()
    for kept in _stores.values():
        kept.reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


# -- what the middleware asks -------------------------------------------------------


def older(
    served: Served | None, files: ServedFiles, name: str, version: str | None
) -> Served | None:
    """
    What to serve for ``name`` asked as version ``version``: ``served`` (the
    current bytes, or None) unless ``version`` names another version that
    the store keeps, whose bytes are then served instead (and ``served`` is
    closed).
    """
    if not version:
        return served
    if served is not None and served.digest[: files.hash_length] == version:
        return served
    current = store()
    if current is None:
        return served
    found = current.find(name, version, algorithm=files.algorithm)
    if found is None:
        return served
    if served is not None:
        served.close()
    return Served(
        found.digest,
        len(found.data),
        None,
        body=found.data,
        algorithm=files.algorithm,
        covered=found.covered,
    )


def keep(files: ServedFiles, name: str, served: Served) -> None:
    """Keep the version of ``name`` being served, when its body is read."""
    if served.body is None:
        return
    current = store()
    if current is not None:
        current.put(
            name,
            served.body,
            algorithm=files.algorithm,
            version=served.digest[: files.hash_length],
            covered=served.covered,
        )
