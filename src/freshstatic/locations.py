"""
Where static files live: the finders' roots, name checks and confinement.

A static name is resolved exactly as ``runserver`` and WhiteNoise's
``WHITENOISE_USE_FINDERS`` resolve it: the first match of the configured
staticfiles finders. Nothing here reads a file.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import IO

from django.apps import apps
from django.contrib.staticfiles import utils
from django.contrib.staticfiles.finders import (
    AppDirectoriesFinder,
    BaseFinder,
    FileSystemFinder,
    get_finders,
)
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage

# collectstatic's defaults, used when the staticfiles app config has none.
DEFAULT_IGNORE_PATTERNS = ["CVS", ".*", "*~"]

# (device, inode) of a file.
Inode = tuple[int, int]


def clean_name(name: str) -> str | None:
    """
    Return ``name`` normalised to a relative POSIX path, or None when it could
    reach outside the static locations (``..``, absolute, drive, NUL byte).
    """
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    if os.name == "nt" and PureWindowsPath(name).drive:  # pragma: no cover (POSIX CI)
        return None
    normalised = posixpath.normpath(name)
    if normalised in (".", "..") or normalised.startswith("../"):
        return None
    return normalised


def finder_roots() -> list[tuple[str, str]]:
    """Every (prefix, absolute folder) the configured finders look in."""
    finders = tuple(get_finders())  # the same objects until settings change
    return list(_finder_roots(finders))


@functools.lru_cache(maxsize=4)
def _finder_roots(finders: tuple[BaseFinder, ...]) -> tuple[tuple[str, str], ...]:
    roots: list[tuple[str, str]] = []
    for finder in finders:
        # FileSystemFinder: STATICFILES_DIRS as (prefix, root) pairs.
        for prefix, root in getattr(finder, "locations", None) or ():
            roots.append((prefix or "", os.path.abspath(root)))
        # AppDirectoriesFinder (and finders like it): one storage per folder;
        # BaseStorageFinder subclasses (DefaultStorageFinder): one storage.
        storages = getattr(finder, "storages", None)
        finder_storages = list(storages.values()) if isinstance(storages, dict) else []
        single = getattr(finder, "storage", None)
        if single is not None:
            finder_storages.append(single)
        for storage in finder_storages:
            # base_location: the configured folder; location alone would turn
            # an unset one ("") into the current directory.
            if getattr(storage, "base_location", None) and getattr(
                storage, "location", None
            ):
                prefix = getattr(storage, "prefix", None) or ""
                roots.append((prefix, os.path.abspath(storage.location)))
    return tuple(roots)


def storage_location(storage: Storage) -> str | None:
    """The local folder a storage keeps its own copies in, if it has one."""
    location = getattr(storage, "location", None)
    return os.path.abspath(location) if isinstance(location, str) and location else None


def allowed_roots(storage: Storage) -> tuple[str, ...]:
    """The folders a file may be read from: the finders' and the storage's."""
    roots = [root for _prefix, root in finder_roots()]
    location = storage_location(storage)
    if location is not None:
        roots.append(location)
    return tuple(roots)


@functools.lru_cache(maxsize=16)
def _real_roots(roots: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.realpath(root) for root in roots)


def real_roots(roots: Iterable[str]) -> tuple[str, ...]:
    """``roots`` with every symlink resolved (kept until forget_real_roots())."""
    return _real_roots(tuple(roots))


def forget_real_roots() -> None:
    """Resolve the roots' symlinks anew (a `current -> release` switch)."""
    _real_roots.cache_clear()


def open_regular(path: str) -> IO[bytes]:  # pragma: no cover (systems without O_PATH)
    """
    Open ``path`` for reading only if it is a regular file: never block on a
    FIFO or read a device that was put where a static file should be.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotAFile(errno.EISDIR, "not a regular file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _inside(real: str, roots: Iterable[str]) -> bool:
    return any(
        real.startswith(root.rstrip(os.sep) + os.sep)
        for root in _real_roots(tuple(roots))
    )


def file_identity(info: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a file's content may have (ctime included: a
    process can restore a file's mtime, never its ctime)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class OutsideRoots(PermissionError):
    """A static name resolved to a file outside every static root."""


class NotAFile(IsADirectoryError):
    """A static name resolved to a folder, a FIFO or a device."""


def open_within(path: str, roots: Iterable[str]) -> IO[bytes]:
    """
    Open the regular file at ``path`` for reading if it lies inside ``roots``
    once every symlink is resolved; else raise OutsideRoots (or OSError).

    On Linux the file is first opened with O_PATH (which reads nothing and
    cannot block), checked through the kernel's own name for it, and only
    then opened for reading through that same descriptor: a path swapped in
    between cannot escape. Elsewhere, the resolved path is checked first.
    """
    if not _O_PATH:  # pragma: no cover (CI runs on Linux)
        real = os.path.realpath(path)
        if not _inside(real, roots):
            raise OutsideRoots(real)
        return open_regular(path)
    handle = os.open(path, _O_PATH | os.O_CLOEXEC)
    try:
        real = os.readlink(f"/proc/self/fd/{handle}")
        if not _inside(real, roots):
            raise OutsideRoots(real)
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise NotAFile(errno.EISDIR, "not a regular file")  # never opened
        # The very file just checked (the descriptor, not the path, is
        # opened again): no need to check it is regular a second time.
        descriptor = os.open(
            f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        )
        return os.fdopen(descriptor, "rb")
    finally:
        os.close(handle)


_O_PATH = getattr(os, "O_PATH", 0) if os.path.isdir("/proc/self/fd") else 0
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_listed(path: str, inode: Inode) -> IO[bytes] | None:
    """
    Open ``path`` for reading if it is still the regular file ``inode`` that
    a listing found inside the static roots (``Listing.inodes``); else None,
    and open_within() decides. Cheaper than open_within(): no path resolved.

    As in open_within(), the file is first opened with O_PATH (which reads
    nothing), here without following a final symlink, and opened for reading
    through that descriptor only if it is that very file: had a folder on
    its path been swapped for a symlink since the listing, the descriptor is
    another file's, and nothing is read.
    """
    if not _O_PATH:  # pragma: no cover (CI runs on Linux)
        return None
    try:
        handle = os.open(path, _O_PATH | _O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # gone since the listing
        return None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != inode:
            return None
        descriptor = os.open(
            f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        )
    finally:
        os.close(handle)
    # Unbuffered: each read() is one system call, straight into the bytes.
    return os.fdopen(descriptor, "rb", buffering=0)


def first_match(name: str) -> str | None:
    """The absolute path the finders resolve ``name`` to, or None."""
    for finder in get_finders():
        result = finder.find(name)
        if isinstance(result, (list, tuple)):
            result = result[0] if result else None
        if result:
            return str(result)
    return None


def ignore_patterns() -> list[str]:
    config = apps.get_app_config("staticfiles")
    return list(getattr(config, "ignore_patterns", None) or DEFAULT_IGNORE_PATTERNS)


def all_names(storage: Storage) -> Iterator[str]:
    """Every static name: the storage's own files, then the finders' files."""
    return iter(all_files(storage))


def all_files(storage: Storage) -> dict[str, str | None]:
    """
    Every static name and the local file it resolves to (None when the
    storage holds it remotely): the storage's own files, then the finders'
    first matches, in the order the finders search.
    """
    return list_files(storage).paths


@dataclass
class Listing:
    """Every static name, where it resolves to, and what was found there."""

    # Each name's local file (None when the storage holds it remotely).
    paths: dict[str, str | None] = field(default_factory=dict)
    # (device, inode) of the names found as regular files, each reached from
    # its root through real folders only (no symlink): see open_listed().
    inodes: dict[str, Inode] = field(default_factory=dict)

    def add(self, name: str, path: str | None, inode: Inode | None = None) -> None:
        """Add ``name`` unless listed already (the first match wins)."""
        if os.sep != "/":  # pragma: no cover (POSIX CI)
            name = name.replace(os.sep, "/")
        if name not in self.paths:
            self.paths[name] = path
            if inode is not None:
                self.inodes[name] = inode


def list_files(storage: Storage) -> Listing:
    """
    ``all_files()``, and the identity of each regular file listed. A local
    folder is walked by descriptors, as collectstatic would list it.
    """
    patterns = ignore_patterns()
    listing = Listing()
    location = storage_location(storage)
    # A remote storage has no local folder: ask it for its listing.
    if location is None or os.path.isdir(location):
        try:
            _list_storage(listing, storage, "", patterns)
        except (ImproperlyConfigured, NotImplementedError, OSError):
            listing = Listing()  # none of the storage's own, as collectstatic
    for finder in get_finders():
        storages = _finder_storages(finder)
        if storages is None:
            for path, finder_storage in finder.list(patterns):
                prefix = getattr(finder_storage, "prefix", None)
                name = posixpath.join(prefix, path) if prefix else path
                listing.add(name, _local_path(finder_storage, path))
            continue
        for finder_storage in storages:
            prefix = getattr(finder_storage, "prefix", None) or ""
            _list_storage(listing, finder_storage, prefix, patterns)
    return listing


def _finder_storages(finder: BaseFinder) -> list[Storage] | None:
    """
    The storages Django's own finders list, in their order (the folders that
    exist); None for another finder, which lists itself.
    """
    if type(finder) is FileSystemFinder:
        return [
            finder.storages[root]
            for _prefix, root in finder.locations
            if os.path.isdir(root)
        ]
    if type(finder) is AppDirectoriesFinder:
        return [storage for storage in finder.storages.values() if storage.exists("")]
    return None


def _list_storage(
    listing: Listing, storage: Storage, prefix: str, patterns: list[str]
) -> None:
    location = _walkable_folder(storage)
    if location is None:
        for path in utils.get_files(storage, patterns):
            name = posixpath.join(prefix, path) if prefix else path
            listing.add(name, _local_path(storage, path))
        return
    for path, inode in _walk(location, patterns):
        name = posixpath.join(prefix, path) if prefix else path
        listing.add(name, os.path.join(location, path), inode)


def _walkable_folder(storage: Storage) -> str | None:
    """
    The folder of ``storage`` if it lists and resolves names as
    FileSystemStorage does (so that walking the folder lists it), else None.
    """
    kind = storage.__class__  # the wrapped class of a lazy storage too
    if (
        _O_NOFOLLOW
        and isinstance(storage, FileSystemStorage)
        and kind.listdir is FileSystemStorage.listdir
        and kind.path is FileSystemStorage.path
        and storage.base_location
    ):
        return os.path.abspath(storage.location)
    return None


def _walk(root: str, patterns: list[str]) -> Iterator[tuple[str, Inode | None]]:
    """
    What ``utils.get_files()`` lists under ``root`` (the same names in the
    same order), each file with its (device, inode) when it is a regular
    file reached through real folders only. Each folder is opened by
    descriptor, relative to its parent and without following a symlink, so
    that a folder swapped for a symlink meanwhile is never taken for the one
    listed. Symlinked folders are listed as Django lists them, their files
    with no identity: open_within() confines those.
    """
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ignored = _ignored(tuple(patterns)).match
    yield from _walk_folder(root, patterns, ignored, "", descriptor)


def _walk_folder(
    root: str,
    patterns: list[str],
    ignored: Callable[[str], object],
    relative: str,
    descriptor: int,
) -> Iterator[tuple[str, Inode | None]]:
    """The files under the folder open as ``descriptor``, which this closes."""
    try:
        device = os.fstat(descriptor).st_dev
        folders: list[tuple[str, bool]] = []
        with os.scandir(descriptor) as entries:
            for entry in entries:
                name = entry.name
                if entry.is_dir():  # a symlink to a folder too, as in Django
                    folders.append((name, entry.is_dir(follow_symlinks=False)))
                    continue
                # The name, then the path (as get_files() matches them).
                path = relative + name
                if ignored(name) or (relative and ignored(path)):
                    continue
                regular = entry.is_file(follow_symlinks=False)
                yield path, (device, entry.inode()) if regular else None
        for name, real in folders:
            if ignored(name):
                continue
            path = relative + name
            child = None
            if real:
                try:
                    child = os.open(
                        name,
                        os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=descriptor,
                    )
                except OSError:  # swapped for a symlink since: no identities
                    child = None
            if child is not None:
                yield from _walk_folder(root, patterns, ignored, path + os.sep, child)
            else:
                storage = FileSystemStorage(location=root)
                for found in utils.get_files(storage, patterns, path):
                    yield found, None
    finally:
        os.close(descriptor)


@functools.lru_cache(maxsize=8)
def _ignored(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One expression matching what any of ``patterns`` matches (fnmatchcase)."""
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


def _local_path(storage: Storage, name: str) -> str | None:
    try:
        return str(storage.path(name))
    except (NotImplementedError, ValueError, ImproperlyConfigured):
        return None
