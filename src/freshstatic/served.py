"""
The bytes served for a static name, and their hash: one home for both.

A name resolves to the file that will be served (the storage's own copy when
it has one, otherwise the staticfiles finders' first match). Its body is the
file as it is, or, for a stylesheet the middleware serves, the file with each
static reference carrying that file's own ``?v=``. A JavaScript module the
middleware serves keeps its bytes (unless ``FRESHSTATIC["REWRITE_IMPORTS"]``
versions its relative imports), but its digest also covers the digests of
what it imports, so that an edit anywhere down an import chain changes the
URL of every module above it. Each body is hashed once per version, a
version being identified by the files it was built from: (device, inode,
size, mtime, ctime) of each. The storage asks for digests (URLs), the
middleware for bodies (responses); neither builds them itself.

Everything kept in memory here is bounded in bytes: one version per name,
least recently used first out.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Generic, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage

from freshstatic import compress, css, locations, modules
from freshstatic.conf import conf, middleware_serves
from freshstatic.hashing import hash_stream
from freshstatic.log import warn_once

if TYPE_CHECKING:
    from django.core.files.storage import Storage

_V = TypeVar("_V")
Identity = tuple[int, ...]
# A file a body was built from, and the identity it had then.
Dependency = tuple[str, Identity]

# Files up to this size are read whole and served from memory, so that the
# hash is of exactly the bytes sent; larger ones stream.
IN_MEMORY_MAX_BYTES = 2 * 1024 * 1024
# Stylesheets larger than this are served as they are, not rewritten, and
# modules larger than this are hashed as they are, their imports not read
# (one rewrite holds a few copies of the text in memory).
STYLESHEET_MAX_BYTES = 8 * 1024 * 1024
# @import/url() chains between stylesheets, and import chains between
# modules, deeper than this stop versioning.
MAX_STYLESHEET_DEPTH = 32
# The static files taken for JavaScript modules.
MODULE_SUFFIXES = (".js", ".mjs")
# What the versions kept in this process (rewritten stylesheets' bodies
# included) may take; the least recently used go first.
VERSIONS_MAX_BYTES = 64 * 1024 * 1024
# What the compressed bodies kept in this process may take, and the largest
# file compressed (off the request path) when it is not held in memory.
ENCODED_MAX_BYTES = 64 * 1024 * 1024
LARGE_COMPRESS_MAX_BYTES = 32 * 1024 * 1024
# What the resolutions of names kept per generation may take.
SOURCES_MAX_BYTES = 4 * 1024 * 1024
# How long a request waits for another one building the same version.
BUILD_WAIT_SECONDS = 120.0
# Bookkeeping of one kept version beside its body and paths.
_VERSION_OVERHEAD_BYTES = 400


@dataclass(frozen=True)
class Version:
    """One version of the bytes served for a name, and their digest."""

    name: str
    # The local file, or "" when the storage itself serves it (S3...).
    path: str
    identity: Identity | None
    digest: str
    # The other files the body was built from (a stylesheet's references).
    dependencies: tuple[Dependency, ...] = ()
    # The rewritten stylesheet; None: the file's own bytes, read when served.
    body: bytes | None = None
    rewritten: bool = False
    # The cache generation a rewritten body or a remote file was built under.
    epoch: str | None = None
    # What the digest covers beside the bytes served: a module's imports, a
    # "<name> <digest>" line each (see digest_of()); () for a digest of the
    # bytes alone; None when not known here (a digest from the shared cache).
    covered: tuple[str, ...] | None = ()

    def cost(self) -> int:
        return (
            _VERSION_OVERHEAD_BYTES
            + len(self.name)
            + len(self.path)
            + sum(len(path) + 100 for path, _identity in self.dependencies)
            + (len(self.body) if self.body is not None else 0)
            + sum(len(line) + 60 for line in self.covered or ())
        )

    def files(self) -> tuple[Dependency, ...]:
        """Every local file this version describes, its own first."""
        if self.identity is None:
            return self.dependencies
        return ((self.path, self.identity), *self.dependencies)


@dataclass
class Served:
    """
    What the middleware sends for a name: a body in memory, or an open file
    (read whole by ``read()`` when small, streamed when large). Its digest
    is known before the body is read, so a 304 reads nothing.
    """

    digest: str
    size: int
    # Seconds since the epoch, or None when only the ETag can validate it.
    mtime: float | None
    body: bytes | None = None
    stream: IO[bytes] | None = None
    # The identity of ``stream`` the digest was taken for.
    identity: Identity | None = None
    algorithm: str = "sha256"
    # The file it comes from.
    path: str = ""
    # What the digest covers beside the body (a module's imports).
    covered: tuple[str, ...] = ()

    @property
    def in_memory(self) -> bool:
        """Whether the body is (or will be, once read) held in memory."""
        return self.body is not None or self.size <= IN_MEMORY_MAX_BYTES

    def read(self) -> bytes:
        """
        The whole body, read now if it was not. If the file changed since its
        digest was taken, the digest (and size) become those of the bytes
        read: the digest always describes exactly what is sent.
        """
        if self.body is None:
            assert self.stream is not None
            data = self.stream.read()
            after = locations.file_identity(os.fstat(self.stream.fileno()))
            self.close()
            if after != self.identity:
                self.digest = hashlib.new(self.algorithm, data).hexdigest()
                self.size = len(data)
                self.covered = ()
            self.body = data
        return self.body

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


class SharedDigests(Protocol):
    """Digests shared with other processes (the cache), as the storage
    provides them for one generation."""

    def get(self, key: str) -> tuple[str, tuple[Dependency, ...]] | None: ...

    def set(self, key: str, digest: str, files: tuple[Dependency, ...]) -> None: ...


class BoundedCache(Generic[_V]):
    """Values by key, bounded in bytes, least recently used out first."""

    def __init__(self, max_bytes: int, cost: Callable[[_V], int]) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._cost = cost
        self._values: OrderedDict[tuple[object, ...], _V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: tuple[object, ...]) -> _V | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: tuple[object, ...], value: _V) -> None:
        cost = self._cost(value)
        with self._lock:
            old = self._values.pop(key, None)
            if old is not None:
                self.bytes -= self._cost(old)
            if cost > self.max_bytes:
                return  # would evict everything else: serve it, keep nothing
            self._values[key] = value
            self.bytes += cost
            while self.bytes > self.max_bytes:
                _key, evicted = self._values.popitem(last=False)
                self.bytes -= self._cost(evicted)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.bytes = 0

    def reset_lock(self) -> None:
        self._lock = threading.Lock()


class VersionCache(BoundedCache[Version]):
    """Versions by key (one per name), bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, Version.cost)


def _encoded_cost(body: bytes) -> int:
    return len(body) + _VERSION_OVERHEAD_BYTES


def _sources_cost(entry: tuple[str, tuple[str, str] | None]) -> int:
    name, source = entry
    return len(name) + (len(source[1]) if source else 0) + _VERSION_OVERHEAD_BYTES


_versions = VersionCache(VERSIONS_MAX_BYTES)
# Compressed bodies by (algorithm, digest, coding, level): content-addressed.
_encoded: BoundedCache[bytes] = BoundedCache(ENCODED_MAX_BYTES, _encoded_cost)
# Where names resolve to, per generation (which a new or moved file rotates).
_sources: BoundedCache[tuple[str, tuple[str, str] | None]] = BoundedCache(
    SOURCES_MAX_BYTES, _sources_cost
)
# Large bodies being compressed off the request path.
_compressing: set[tuple[object, ...]] = set()
_compressor: ThreadPoolExecutor | None = None
# Versions being built, so that concurrent first requests build once.
_building: dict[tuple[object, ...], threading.Event] = {}
_building_lock = threading.Lock()


def forget_versions() -> None:
    """Drop every version (and compressed body) kept in this process."""
    _versions.clear()
    _encoded.clear()
    _sources.clear()


def _reset_after_fork() -> None:
    global _building_lock
    _building_lock = threading.Lock()
    _building.clear()
    _compressing.clear()
    global _compressor
    _compressor = None  # its thread did not survive fork()
    for cache in (_versions, _encoded, _sources):
        cache.reset_lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


@functools.lru_cache(maxsize=8)
def _ignored_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One expression for every ignore pattern (fnmatch's own translation)."""
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


@functools.lru_cache(maxsize=8)
def _release(real_roots: tuple[str, ...]) -> str:
    return hashlib.blake2b(
        "\0".join(real_roots).encode("utf-8", "surrogatepass"), digest_size=8
    ).hexdigest()


def is_module(name: str) -> bool:
    """Whether static file ``name`` is taken for a JavaScript module."""
    return name.lower().endswith(MODULE_SUFFIXES)


def digest_of(algorithm: str, data: bytes, covered: tuple[str, ...] = ()) -> str:
    """
    The digest of a version whose bytes are ``data`` and which also covers
    ``covered`` (a module's imports, a ``"<name> <digest>"`` line each).
    Nothing covered: the digest of the bytes alone.
    """
    return covering(algorithm, hashlib.new(algorithm, data).hexdigest(), covered)


def covering(algorithm: str, own: str, covered: tuple[str, ...]) -> str:
    """
    The digest of a version whose bytes' own digest is ``own`` and which
    also covers ``covered``: the digest of ``own`` and the lines together,
    one a line; ``own`` itself when nothing else is covered.
    """
    if not covered:
        return own
    text = "\n".join((own, *covered))
    return hashlib.new(algorithm, text.encode("utf-8", "surrogatepass")).hexdigest()


def identity_of(path: str) -> Identity | None:
    try:
        return locations.file_identity(os.stat(path))
    except OSError:
        return None


def still_current(files: tuple[Dependency, ...]) -> bool:
    """Whether every file still has the identity recorded."""
    return all(identity_of(path) == identity for path, identity in files)


class ServedFiles:
    """The bytes served for the names of one storage, and their digests."""

    def __init__(
        self,
        storage: Storage,
        *,
        algorithm: str,
        query_param: str,
        hash_length: int,
        version_in: str = "query",
    ) -> None:
        self.storage = storage
        self.algorithm = algorithm
        self.query_param = query_param
        self.hash_length = hash_length
        self.version_in = version_in
        # Versions of this storage's names only (another storage may resolve
        # the same name elsewhere, or hash it differently).
        self._key = (id(self), algorithm, query_param, hash_length, version_in)

    # -- which file --------------------------------------------------------------

    def is_ignored(self, name: str) -> bool:
        """
        Whether ``name`` is never served or hashed: a dotfile, or anything
        collectstatic ignores (``.env``, ``.git/config``, ``*~``, ``CVS``).
        """
        ignored = _ignored_pattern(tuple(locations.ignore_patterns()))
        return any(ignored.match(part) for part in (*name.split("/"), name))

    def source(self, name: str) -> tuple[str, str] | None:
        """
        Where the bytes for clean ``name`` come from: ``("local", path)`` for
        the storage's own local file or else the finders' first match, or
        ``("storage", name)`` for a storage that is not a local folder (S3...).
        Confinement is checked when the file is opened.
        """
        storage = self.storage
        if isinstance(storage, FileSystemStorage) and not storage.base_location:
            own = False  # no STATIC_ROOT: the finders serve everything
        else:
            try:
                own = storage.exists(name)
            except (ImproperlyConfigured, SuspiciousFileOperation):
                own = False
        if own:
            try:
                local = storage.path(name)
            except NotImplementedError:
                return ("storage", name)
            if not os.path.lexists(local):
                return ("storage", name)  # e.g. InMemoryStorage
            if os.path.isfile(local):
                return ("local", local)
            # A folder or a broken symlink: not a file to serve.
        path = locations.first_match(name)
        return None if path is None else ("local", path)

    def rewrites(self, name: str) -> bool:
        """
        Whether ``name`` is served rewritten, each static reference carrying
        its target's ``?v=`` (when FreshStaticMiddleware serves files, the
        default): a stylesheet, or a module with REWRITE_IMPORTS.
        """
        if is_module(name):
            return conf.REWRITE_IMPORTS and middleware_serves()
        return name.lower().endswith(".css") and middleware_serves()

    def covers_references(self, name: str) -> bool:
        """
        Whether the digest of ``name`` covers the digests of the files it
        references (when FreshStaticMiddleware serves files): a stylesheet
        (served rewritten), or a JavaScript module (its imports).
        """
        return (name.lower().endswith(".css") or is_module(name)) and (
            middleware_serves()
        )

    def release(self) -> str:
        """
        What tells this release's files apart from another's sharing the
        cache: a digest of the real static roots (two releases side by side
        live in different folders).
        """
        return _release(locations.real_roots(locations.allowed_roots(self.storage)))

    def shared_key(self, name: str, rewritten: bool, release: str | None = None) -> str:
        """The key of ``name`` in the shared cache (``release``: self.release())."""
        release = self.release() if release is None else release
        return f"{_kind(name, rewritten)}:{self.algorithm}:{release}:{name}"

    def _version_key(self, name: str, rewritten: bool) -> tuple[object, ...]:
        """Where the version of ``name`` is kept in this process."""
        return (*self._key, _kind(name, rewritten), name)

    # -- digests, for URLs -----------------------------------------------------------

    def version(
        self,
        name: str,
        epoch: str | None,
        shared: SharedDigests | None = None,
        *,
        path: str | None = None,
        inode: locations.Inode | None = None,
    ) -> Version | None:
        """
        The current version of clean ``name``, or None if nothing is served
        for it. Never raises: a file that cannot be read is logged once.
        ``path``: the local file ``name`` resolves to, when already known
        (from a listing of the static folders); it is still confined, by
        ``inode`` when the listing found it there (``locations.open_listed``).
        """
        if self.is_ignored(name):
            return None
        try:
            source = ("local", path) if path is not None else self.source(name)
            if source is None:
                return None
            kind, location = source
            if kind == "storage":
                return self._remote(name, epoch, shared)
            listed = inode if path is not None else None
            with self._open(location, listed) as stream:
                return self._local(name, location, stream, epoch, shared)
        except locations.NotAFile:
            return None  # a folder or a device where a file was expected
        except locations.OutsideRoots as exc:
            warn_once(
                name,
                "Static file %r resolves to %r, outside the static locations "
                "(a symlink?); it is never read and its URL carries no hash.",
                name,
                str(exc),
            )
        except Exception as exc:  # a page must never fail because of a file
            warn_once(
                name,
                "Static file %r could not be read (%s: %s); its URL carries no hash.",
                name,
                type(exc).__name__,
                exc,
            )
        return None

    def _open(self, path: str, inode: locations.Inode | None = None) -> IO[bytes]:
        stream = None if inode is None else locations.open_listed(path, inode)
        if stream is None:
            stream = locations.open_within(path, locations.allowed_roots(self.storage))
        return stream

    def _remote(
        self, name: str, epoch: str | None, shared: SharedDigests | None
    ) -> Version | None:
        # Nothing local to identify it by: the generation stands for it.
        key = (*self._key, "storage", name)
        kept = _versions.get(key)
        if kept is not None and epoch is not None and kept.epoch == epoch:
            return kept
        shared_key = self.shared_key(name, False)
        found = shared.get(shared_key) if shared is not None else None
        if found is not None and not found[1]:
            digest = found[0]
        else:
            with self.storage.open(name, "rb") as stream:
                digest = hash_stream(stream, self.algorithm)
            if shared is not None:
                shared.set(shared_key, digest, ())
        version = Version(name, "", None, digest, epoch=epoch)
        if epoch is not None:
            _versions.put(key, version)
        return version

    def _local(
        self,
        name: str,
        path: str,
        stream: IO[bytes],
        epoch: str | None,
        shared: SharedDigests | None,
    ) -> Version:
        info = os.fstat(stream.fileno())
        identity = locations.file_identity(info)
        rewritten = self._covers(name, info.st_size)
        key = self._version_key(name, rewritten)

        def kept() -> Version | None:
            version = _versions.get(key)
            return version if _valid(version, path, identity, epoch) else None

        # Only a shared cache needs it.
        shared_key = "" if shared is None else self.shared_key(name, rewritten)
        version = kept()
        if version is not None:
            if shared is not None:  # a new generation: share what is known
                shared.set(shared_key, version.digest, version.files())
            return version
        found = shared.get(shared_key) if shared is not None else None
        if found is not None:
            digest, files = found
            if files and files[0] == (path, identity) and still_current(files[1:]):
                # Enough for a URL; a rewritten body (what a module's digest
                # covers) is built anew when served.
                version = Version(
                    name,
                    path,
                    identity,
                    digest,
                    files[1:],
                    None,
                    rewritten,
                    epoch,
                    None if rewritten else (),
                )
                _versions.put(key, version)
                return version

        def build() -> Version:
            if rewritten:
                version = self._build(name, path, stream, info, epoch)
            else:
                digest = hash_stream(stream, self.algorithm, info.st_size)
                version = Version(name, path, identity, digest)
            if locations.file_identity(os.fstat(stream.fileno())) == identity:
                _versions.put(key, version)  # else changed while read: keep none
            return version

        if not rewritten and info.st_size <= IN_MEMORY_MAX_BYTES:
            version = build()  # cheaper than making sure it is built once
        else:
            version = _once(key, kept, build)
        # Shared outside the build others may wait on (no network call
        # there), and only if kept: not if the file changed while read.
        if shared is not None and _versions.get(key) is version:
            shared.set(shared_key, version.digest, version.files())
        return version

    def _covers(self, name: str, size: int) -> bool:
        """covers_references(), for a file of ``size`` bytes."""
        if not self.covers_references(name):
            return False
        if size > STYLESHEET_MAX_BYTES:
            warn_once(
                f"{name}\0too big",
                "Module %r is larger than %d bytes: its imports are not read, "
                "and its URL carries the hash of its bytes alone."
                if is_module(name)
                else "Stylesheet %r is larger than %d bytes: it is served as it "
                "is, its references without their hashes.",
                name,
                STYLESHEET_MAX_BYTES,
            )
            return False
        return True

    # -- bodies, for responses -------------------------------------------------------

    def open(self, name: str, epoch: str | None) -> Served | None:
        """
        The bytes to serve for clean ``name`` and their digest, or None if
        nothing is served for it (missing, ignored, not a regular file).
        Raises OutsideRoots for a file outside the static locations and
        OSError for one that cannot be read. The caller closes what it gets.
        """
        if self.is_ignored(name):
            return None
        source = self.resolve(name, epoch)
        if source is None or source[0] != "local":
            return None
        path = source[1]
        try:
            stream = self._open(path)
        except locations.NotAFile:
            return None
        except FileNotFoundError:
            # Gone since it was resolved: the name may live elsewhere now.
            source = self.source(name)
            if source is None or source[0] != "local" or source[1] == path:
                return None
            path = source[1]
            stream = self._open(path)
        try:
            return self._served(name, path, stream, epoch)
        except BaseException:
            stream.close()
            raise

    def resolve(self, name: str, epoch: str | None) -> tuple[str, str] | None:
        """``source(name)``, remembered for the generation ``epoch``."""
        if epoch is None:
            return self.source(name)
        key = (*self._key, epoch, name)
        kept = _sources.get(key)
        if kept is not None:
            return kept[1]
        source = self.source(name)
        if source is not None:  # missing names are not kept: endless
            _sources.put(key, (name, source))
        return source

    def _served(
        self, name: str, path: str, stream: IO[bytes], epoch: str | None
    ) -> Served:
        before = os.fstat(stream.fileno())
        identity = locations.file_identity(before)
        if self._covers(name, before.st_size):
            version = _versions.get(self._version_key(name, True))
            if not _valid(version, path, identity, epoch):
                version = self._local(name, path, stream, epoch, None)
            assert version is not None
            if version.covered is None:  # known from the shared cache: build it
                stream.seek(0)
                version = self._build(name, path, stream, before, epoch)
                if version.identity == identity:
                    _versions.put(self._version_key(name, True), version)
            if version.body is None:
                # A module served as it is, under the version that covers its
                # imports: its own mtime validates its bytes.
                stream.seek(0)
                return Served(
                    version.digest,
                    before.st_size,
                    before.st_mtime,
                    stream=stream,
                    identity=identity,
                    algorithm=self.algorithm,
                    path=path,
                    covered=version.covered or (),
                )
            stream.close()
            body = version.body
            # The body also depends on the files it references: only the
            # ETag (its hash) can validate it, not the file's own mtime.
            return Served(
                version.digest,
                len(body),
                None,
                body=body,
                algorithm=self.algorithm,
                covered=version.covered or (),
            )
        key = self._version_key(name, False)
        kept = _versions.get(key)
        if _valid(kept, path, identity, epoch):
            assert kept is not None
            # Known: nothing is read until the body is needed (never for 304).
            return Served(
                kept.digest,
                before.st_size,
                before.st_mtime,
                stream=stream,
                identity=identity,
                algorithm=self.algorithm,
                path=path,
            )
        if before.st_size <= IN_MEMORY_MAX_BYTES:
            # Read whole, so that the hash is of exactly the bytes sent, even
            # if the file is rewritten in place meanwhile.
            data = stream.read()
            after = os.fstat(stream.fileno())
            stream.close()
            digest = hashlib.new(self.algorithm, data).hexdigest()
            if locations.file_identity(after) == identity:
                _versions.put(key, Version(name, path, identity, digest))
            return Served(
                digest,
                len(data),
                after.st_mtime,
                body=data,
                algorithm=self.algorithm,
                path=path,
            )
        version = self._local(name, path, stream, epoch, None)
        stream.seek(0)
        return Served(
            version.digest,
            before.st_size,
            before.st_mtime,
            stream=stream,
            identity=identity,
            algorithm=self.algorithm,
            path=path,
        )

    def requested(
        self, name: str, version: str | None, epoch: str | None
    ) -> tuple[str, str | None]:
        """
        The static name a request path names, and the version it asks for:
        ``version`` (``?v=``), or with ``version_in="filename"`` the hash
        in the file's name (``site.3f2a9c01b7e4.css``), unless a file has
        that very name.
        """
        if self.version_in != "filename" or self.resolve(name, epoch) is not None:
            return name, version
        split = without_version(name, self.hash_length)
        return split if split is not None else (name, version)

    # -- compressed bodies -------------------------------------------------------------

    def encoded(self, served: Served, coding: str, level: int) -> bytes:
        """
        ``served``'s body (read whole) compressed with ``coding``: once per
        version and coding, however many requests ask at once.
        """
        body = served.read()
        key = (self.algorithm, served.digest, coding, level)
        kept = _encoded.get(key)
        if kept is not None:
            return kept

        def build() -> bytes:
            data = compress.compress(body, coding, level)
            _encoded.put(key, data)
            return data

        return _once(key, lambda: _encoded.get(key), build)

    def encoded_later(
        self, served: Served, coding: str, level: int, path: str
    ) -> bytes | None:
        """
        The compressed body of a large file if it is ready; otherwise None,
        and it is compressed off the request path (once) for later requests.
        """
        global _compressor
        key = (self.algorithm, served.digest, coding, level)
        kept = _encoded.get(key)
        if kept is not None or served.size > LARGE_COMPRESS_MAX_BYTES:
            return kept
        with _building_lock:
            if key in _compressing:
                return None
            _compressing.add(key)
            if _compressor is None:
                _compressor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="freshstatic-compress"
                )
            executor = _compressor
        executor.submit(
            self._compress_file, key, path, served.digest, served.covered, coding, level
        )
        return None

    def _compress_file(
        self,
        key: tuple[object, ...],
        path: str,
        digest: str,
        covered: tuple[str, ...],
        coding: str,
        level: int,
    ) -> None:
        try:
            with self._open(path) as stream:
                data = stream.read(LARGE_COMPRESS_MAX_BYTES + 1)
            # Only for the very bytes the digest names (the file may have
            # changed since).
            if digest_of(self.algorithm, data, covered) == digest:
                _encoded.put(key, compress.compress(data, coding, level))
        except Exception as exc:  # a page must never fail because of this
            warn_once(
                f"{path}\0compress",
                "Static file %r could not be compressed (%s: %s).",
                path,
                type(exc).__name__,
                exc,
            )
        finally:
            with _building_lock:
                _compressing.discard(key)

    def on_disk(self, name: str) -> tuple[str, os.stat_result] | None:
        """
        The digest of the file for clean ``name`` as it is on disk, and its
        status, or None: what something else (WhiteNoise) serves for it.
        """
        if self.is_ignored(name):
            return None
        source = self.source(name)
        if source is None or source[0] != "local":
            return None
        try:
            with self._open(source[1]) as stream:
                info = os.fstat(stream.fileno())
                version = self._local(name, source[1], stream, None, None)
        except OSError:
            return None
        return version.digest, info

    # -- stylesheets and modules ------------------------------------------------------

    def target(self, stylesheet: str, reference: str) -> str | None:
        """The clean static name ``reference`` in ``stylesheet`` points at."""
        path = unquote(reference.partition("#")[0].partition("?")[0])
        if path.startswith("/"):
            static_path = urlsplit(settings.STATIC_URL or "/").path
            if not path.startswith(static_path):
                return None  # a root-relative URL that is not static
            path = path[len(static_path) :]
        else:
            path = posixpath.join(posixpath.dirname(stylesheet), path)
        return locations.clean_name(path)

    def module_target(
        self, module: str, specifier: str, import_map: Mapping[str, str]
    ) -> str | None:
        """
        The clean static name ``specifier`` in ``module`` imports: a path
        (resolved as a stylesheet's references are), or a bare specifier
        that ``import_map`` (``FRESHSTATIC["IMPORTMAP"]``) maps to a static
        name; None for a URL or another bare specifier.
        """
        if modules.is_url(specifier):
            return None
        if modules.is_bare(specifier):
            mapped = modules.mapped(specifier, import_map)
            if mapped is None or modules.is_url(mapped):
                return None
            return locations.clean_name(mapped)
        return self.target(module, specifier)

    def _build(
        self,
        name: str,
        path: str,
        stream: IO[bytes],
        info: os.stat_result,
        epoch: str | None,
    ) -> Version:
        """
        Build stylesheet or module ``name`` (open as ``stream``) and the
        stylesheets and modules it references, deepest first, without
        recursion: a chain of any length stops at MAX_STYLESHEET_DEPTH, a
        cycle where it closes.
        """
        root = _Sheet(name, path, stream.read(), locations.file_identity(info))
        build = _Build(epoch, conf.IMPORTMAP, conf.REWRITE_IMPORTS)
        stack: list[_Sheet] = [root]
        while stack:
            sheet = stack[-1]
            if sheet.pending is None:
                sheet.pending = self._children(sheet, stack, build)
            if sheet.pending:
                child = sheet.pending.pop()
                if child.name not in build.done:
                    stack.append(child)
                continue
            stack.pop()
            if sheet.name not in build.done:
                build.done[sheet.name] = self._rewrite(sheet, build)
        version = build.done[name]
        assert version is not None
        return version

    def _children(
        self, sheet: _Sheet, stack: list[_Sheet], build: _Build
    ) -> list[_Sheet]:
        """
        The stylesheets and modules ``sheet`` references that must be built
        first.
        """
        if sheet.raw is None and not self._load(sheet, build):
            return []
        sheet.references = self._references(sheet, build)
        children: list[_Sheet] = []
        seen = {open_sheet.name for open_sheet in stack}
        for reference, target in sheet.references:
            if (
                target is None
                or target in build.done
                or target in seen
                or not self.covers_references(target)
            ):
                continue
            seen.add(target)
            if len(stack) >= MAX_STYLESHEET_DEPTH:
                warn_once(
                    f"{sheet.name}\0{reference}\0depth",
                    "Module %r imports %r more than %d modules deep; its URL "
                    "does not cover that import."
                    if is_module(sheet.name)
                    else "Stylesheet %r references %r more than %d stylesheets "
                    "deep; the reference is left as it is.",
                    sheet.name,
                    reference,
                    MAX_STYLESHEET_DEPTH,
                )
                continue
            children.append(_Sheet(target))
        return children

    def _references(self, sheet: _Sheet, build: _Build) -> list[tuple[str, str | None]]:
        """
        Each reference in stylesheet ``sheet`` (each import, in a module),
        and the static name it points at.
        """
        text = sheet.text()
        if is_module(sheet.name):
            return [
                (specifier, self.module_target(sheet.name, specifier, build.import_map))
                for specifier in modules.imports(text)
            ]
        return [
            (reference, self.target(sheet.name, reference))
            for reference in dict.fromkeys(css.references(text))
        ]

    def _load(self, sheet: _Sheet, build: _Build) -> bool:
        """
        Read referenced stylesheet or module ``sheet``; False when it needs
        no reading: kept already, or not built from its references (missing,
        too big, remote), in which case its version is in ``build.done``.
        """
        name = sheet.name
        source = None if self.is_ignored(name) else self.source(name)
        if source is not None and source[0] == "local":
            try:
                with self._open(source[1]) as stream:
                    info = os.fstat(stream.fileno())
                    identity = locations.file_identity(info)
                    kept = _versions.get(self._version_key(name, True))
                    if _valid(kept, source[1], identity, build.epoch):
                        build.done[name] = kept
                        return False
                    if self._covers(name, info.st_size):
                        sheet.path, sheet.identity = source[1], identity
                        sheet.raw = stream.read()
                        return True
            except OSError:
                pass  # reported by version() below, if it fails there too
        build.done[name] = self.version(name, build.epoch)
        return False

    def _rewrite(self, sheet: _Sheet, build: _Build) -> Version:
        """
        The version of ``sheet``, whose references are built already (or
        close a cycle): a stylesheet rewritten, a module as it is (rewritten
        with REWRITE_IMPORTS) under a digest covering its imports'.
        """
        assert sheet.path is not None
        assert sheet.identity is not None
        assert sheet.raw is not None
        module = is_module(sheet.name)
        targets = dict(sheet.references or ())
        dependencies: dict[str, Identity] = {}
        # What a module's digest covers: each import's static name and digest.
        covered: dict[str, str] = {}

        def replace(reference: str) -> str:
            # The rewriters pass exactly the references their readers found.
            target = targets[reference]
            if target is not None and target in build.done:
                version = build.done[target]
            elif target is not None and self.covers_references(target):
                return reference  # a cycle, or too deep: left as it is
            else:
                version = None if target is None else self.version(target, build.epoch)
            if version is None:
                # A URL, or a bare specifier the page's import map resolves:
                # not a mistake.
                if not (
                    module
                    and target is None
                    and (modules.is_bare(reference) or modules.is_url(reference))
                ):
                    warn_once(
                        f"{sheet.name}\0{reference}",
                        "Module %r imports %r, which is not a static file; the "
                        "import is left as it is."
                        if module
                        else "Stylesheet %r references %r, which is not a static "
                        "file; the reference is left as it is.",
                        sheet.name,
                        reference,
                    )
                return reference
            for file_path, identity in version.files():
                dependencies[file_path] = identity
            if module:
                assert target is not None
                covered.setdefault(target, version.digest)
                if not build.rewrite_imports or modules.is_bare(reference):
                    return reference  # versioned by the import map
            path_part, fragment_sep, fragment = reference.partition("#")
            path, query_sep, query = path_part.partition("?")
            short = version.digest[: self.hash_length]
            if self.version_in == "filename":
                path = with_version(path, short)
                return f"{path}{query_sep}{query}{fragment_sep}{fragment}"
            params = [part for part in (query, f"{self.query_param}={short}") if part]
            return f"{path}?{'&'.join(params)}{fragment_sep}{fragment}"

        body: bytes | None
        if not module:
            body = css.rewrite(sheet.text(), replace).encode("utf-8", "surrogateescape")
        elif build.rewrite_imports:
            text = modules.rewrite(sheet.text(), replace)
            body = text.encode("utf-8", "surrogateescape")
        else:
            # Served from its file as it is: only what it imports is needed.
            body = None
            for reference in targets:
                replace(reference)
        lines = tuple(f"{target} {digest}" for target, digest in covered.items())
        dependencies.pop(sheet.path, None)
        version = Version(
            sheet.name,
            sheet.path,
            sheet.identity,
            digest_of(self.algorithm, sheet.raw if body is None else body, lines),
            tuple(dependencies.items()),
            body,
            True,
            build.epoch,
            lines,
        )
        # The file asked for is kept by its caller, which checks that it did
        # not change while read; those it references are kept here.
        if not sheet.asked and identity_of(sheet.path) == sheet.identity:
            _versions.put(self._version_key(sheet.name, True), version)
        return version


@dataclass
class _Build:
    """One build of a stylesheet or module and of what it references."""

    epoch: str | None
    # FRESHSTATIC["IMPORTMAP"] and ["REWRITE_IMPORTS"], read once per build.
    import_map: Mapping[str, str]
    rewrite_imports: bool
    # The versions built or found so far (None: nothing is served for it).
    done: dict[str, Version | None] = field(default_factory=dict)


class _Sheet:
    """A stylesheet (or a module) on the building stack."""

    __slots__ = ("asked", "identity", "name", "path", "pending", "raw", "references")

    def __init__(
        self,
        name: str,
        path: str | None = None,
        raw: bytes | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.raw = raw
        self.identity = identity
        self.asked = raw is not None
        self.pending: list[_Sheet] | None = None
        # Each reference (import) and the static name it points at.
        self.references: list[tuple[str, str | None]] | None = None

    def text(self) -> str:
        return (self.raw or b"").decode("utf-8", "surrogateescape")


def _kind(name: str, rewritten: bool) -> str:
    """
    What a version of ``name`` is, for the keys it is kept under: the file
    as it is, a stylesheet rewritten, a module as it is or rewritten (a
    digest of one is no digest of another).
    """
    if not rewritten:
        return "raw"
    if is_module(name):
        return "imports" if conf.REWRITE_IMPORTS else "module"
    return "css"


def with_version(path: str, short: str) -> str:
    """``css/site.css`` -> ``css/site.<short>.css`` (``LICENSE.<short>``)."""
    folder, slash, filename = path.rpartition("/")
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem:  # no extension, or a dotfile's
        return f"{path}.{short}"
    return f"{folder}{slash}{stem}.{short}.{extension}"


def without_version(name: str, length: int) -> tuple[str, str] | None:
    """The name and hash of a name made by ``with_version``, or None."""
    match = re.fullmatch(
        rf"(?P<head>.+)\.(?P<hash>[0-9a-f]{{{length}}})(?P<tail>\.[^./]+)?", name
    )
    if match is None or "/" in match["hash"]:
        return None
    return match["head"] + (match["tail"] or ""), match["hash"]


def _valid(
    version: Version | None, path: str, identity: Identity, epoch: str | None
) -> bool:
    """Whether a kept version still describes the file at ``path``."""
    if version is None or version.path != path or version.identity != identity:
        return False
    if not version.rewritten:
        return True
    # A rewritten body also depends on which files its references resolve
    # to: a rotation (a file added, moved or edited) means build it anew.
    # While the cache is unreachable, the files it was built from are checked.
    if epoch is None:
        return still_current(version.dependencies)
    return version.epoch == epoch


def _once(
    key: tuple[object, ...],
    kept: Callable[[], _V | None],
    build: Callable[[], _V],
) -> _V:
    """Build the version for ``key`` once, however many threads ask at once."""
    while True:
        with _building_lock:
            event = _building.get(key)
            owner = event is None
            if event is None:
                event = _building[key] = threading.Event()
        if owner:
            try:
                return build()
            finally:
                with _building_lock:
                    _building.pop(key, None)
                event.set()
        event.wait(BUILD_WAIT_SECONDS)
        version = kept()
        if version is not None:
            return version
