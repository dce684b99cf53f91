"""
The storage: ``url(name)`` adds ``?v=<content hash>``, and little else.

The hashed bytes are those that will be served (``freshstatic.served``);
the hash cache (``freshstatic.cache``) shares them between processes and
memoises final URLs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from typing import IO, TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from django.apps import apps
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.exceptions import ImproperlyConfigured

from freshstatic import locations
from freshstatic.cache import HashCache, State
from freshstatic.conf import (
    APP_MISSING_ERROR,
    APP_MISSING_HINT,
    STORAGE_DEFAULTS,
    conf,
    hash_algorithm_error,
    hash_length_error,
    key_prefix_error,
    parse_bool,
    query_param_error,
    strict_error,
    version_in_error,
)
from freshstatic.log import warn_once
from freshstatic.served import Dependency, ServedFiles, with_version

if TYPE_CHECKING:
    from django.core.files.storage import Storage

    _Base = Storage
else:
    _Base = object

logger = logging.getLogger("freshstatic")

# From how many names on hash_names() uses worker processes (when it may
# fork): below, starting them costs more than it saves.
FORK_MIN_NAMES = 500


class FreshStaticMixin(_Base):
    """
    Add ``?<query_param>=<hash of the served file>`` to every ``url()``.

    Mix into any storage class, before it (``class S(FreshStaticMixin,
    S3Storage)``). The keyword arguments are ``STORAGES[...]["OPTIONS"]``.
    """

    def __init__(
        self,
        *args: Any,
        hash_algorithm: str = STORAGE_DEFAULTS["hash_algorithm"],
        hash_length: int = STORAGE_DEFAULTS["hash_length"],
        query_param: str = STORAGE_DEFAULTS["query_param"],
        cache_alias: str = STORAGE_DEFAULTS["cache_alias"],
        key_prefix: str = STORAGE_DEFAULTS["key_prefix"],
        strict: bool | None = STORAGE_DEFAULTS["strict"],
        version_in: str = STORAGE_DEFAULTS["version_in"],
        **kwargs: Any,
    ) -> None:
        if not apps.is_installed("freshstatic"):
            # Refused here because manage.py check cannot say it: only an
            # installed app's checks run (freshstatic.E001).
            raise ImproperlyConfigured(
                f"{APP_MISSING_ERROR} {APP_MISSING_HINT} (freshstatic.E001)"
            )
        errors = [
            error
            for error in (
                hash_algorithm_error(hash_algorithm),
                hash_length_error(hash_length, hash_algorithm),
                key_prefix_error(key_prefix),
                query_param_error(query_param),
                strict_error(strict),
                version_in_error(version_in),
            )
            if error
        ]
        if errors:
            raise ImproperlyConfigured(f"{type(self).__name__}: " + " ".join(errors))
        super().__init__(*args, **kwargs)
        self.hash_algorithm = hash_algorithm.lower()
        self.hash_length = hash_length
        self.query_param = query_param
        self.cache_alias = cache_alias
        self.key_prefix = key_prefix
        self.strict = None if strict is None else parse_bool(strict)
        self.version_in = version_in
        self.hash_cache = HashCache(cache_alias, key_prefix)
        self.served_files = ServedFiles(
            self,
            algorithm=self.hash_algorithm,
            query_param=query_param,
            hash_length=hash_length,
            version_in=version_in,
        )

    # -- the hot path -----------------------------------------------------------

    def url(self, name: str | None) -> str:
        if not isinstance(name, str):
            return super().url(name)
        hash_cache = self.hash_cache
        state = hash_cache.state
        if state.deadline <= monotonic():
            state = hash_cache.refresh()
        url = state.memo.get(name)
        if url is None:
            url = state.odd.get(name) or self._url(name, state)
        return url

    def _url(self, name: str, state: State) -> str:
        path = name.partition("#")[0].partition("?")[0]
        clean_name = locations.clean_name(path)
        digest = None
        if clean_name is None:
            self._missing(path, "is outside the static locations and is never read")
        else:
            version = self.served_files.version(
                clean_name, state.generation, self.hash_cache.shared(state)
            )
            if version is None:
                self._missing(clean_name, "could not be found")
            else:
                digest = version.digest
        url = self._hashed_url(name, digest)
        # Into the state captured before hashing: if an invalidation has
        # replaced it meanwhile, this entry is simply never read.
        state.remember(name, url, canonical=digest is not None and clean_name == name)
        return url

    # -- many names at once -------------------------------------------------------

    def urls(
        self,
        names: Iterable[str],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
        paths: Mapping[str, str | None] | None = None,
        inodes: Mapping[str, locations.Inode] | None = None,
    ) -> dict[str, str | None]:
        """
        Like ``hash_names()``, and return each name's URL (None for a name
        with no file).
        """
        digests = self.hash_names(
            names, workers=workers, progress=progress, paths=paths, inodes=inodes
        )
        return {
            name: self._hashed_url(name, digest) if digest else None
            for name, digest in digests.items()
        }

    def hash_names(
        self,
        names: Iterable[str],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
        paths: Mapping[str, str | None] | None = None,
        inodes: Mapping[str, locations.Inode] | None = None,
    ) -> dict[str, str | None]:
        """
        Hash many files at once, on ``workers`` cores (all by default), and
        store the hashes in the cache; return each name's full hex digest, or
        None for a name with no file. ``progress(n)`` is called as files are
        done. ``paths`` and ``inodes``: what a listing of the static folders
        (``locations.list_files()``) found for some names, so that they are
        neither resolved nor confined again.
        """
        known = paths or {}
        listed = inodes or {}
        wanted = list(dict.fromkeys(names))
        clean = {name: locations.clean_name(name) for name in wanted}
        todo = [name for name in wanted if clean[name] is not None]
        digests: dict[str, str | None] = dict.fromkeys(wanted)
        if progress is not None and len(wanted) > len(todo):
            progress(len(wanted) - len(todo))
        files = self.served_files
        release = files.release()
        progress_lock = threading.Lock()

        def hash_chunk(
            chunk: list[str], generation: str | None, report: bool
        ) -> list[_Hashed]:
            results: list[_Hashed] = []
            for name in chunk:
                version = files.version(
                    str(clean[name]),
                    generation,
                    path=known.get(name),
                    inode=listed.get(name),
                )
                if version is None:
                    results.append((name, None, "", ()))
                else:
                    key = files.shared_key(version.name, version.rewritten, release)
                    results.append((name, version.digest, key, version.files()))
                if progress is not None and report:
                    with progress_lock:
                        progress(1)
            return results

        def store(state: State, results: list[_Hashed]) -> None:
            computed = {}
            for name, digest, key, dependencies in results:
                if digest is not None:
                    digests[name] = digest
                    computed[key] = (digest, dependencies)
            self.hash_cache.set_many(state, computed)

        count = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        # One long task per worker keeps the pool's own overhead out of it.
        chunks = [todo[index::count] for index in range(count)]
        # Most of the work per file is Python, which threads take turns at:
        # worker processes use every core. They are forked before the
        # generation is read, which may start a thread (a Redis listener).
        forking = count > 1 and len(todo) >= FORK_MIN_NAMES and _can_fork()
        with _Children(chunks[1:] if forking else [], hash_chunk) as children:
            # Read before any file is: digests of files read after an
            # invalidation never go under the generation it replaced.
            state = self.hash_cache.refresh()
            children.go(state.generation)
            if forking:
                mine = [*chunks[0], *children.unforked]
                store(state, hash_chunk(mine, state.generation, True))
                for chunk, results in children.results():
                    if results is None:  # the child failed: hashed here
                        results = hash_chunk(chunk, state.generation, True)
                    elif progress is not None:
                        progress(len(chunk))
                    store(state, results)
            elif count == 1:
                store(state, hash_chunk(todo, state.generation, True))
            else:
                with ThreadPoolExecutor(max_workers=count) as pool:
                    done = pool.map(
                        lambda chunk: hash_chunk(chunk, state.generation, True), chunks
                    )
                    store(state, [result for results in done for result in results])
        return digests

    # -- building URLs ------------------------------------------------------------

    def _hashed_url(self, name: str, digest: str | None) -> str:
        rest, fragment_sep, fragment = name.partition("#")
        path, query_sep, query = rest.partition("?")
        versioned = digest is not None and self.version_in == "filename"
        if versioned:
            assert digest is not None
            path = with_version(path, digest[: self.hash_length])
        try:
            parent = super().url(path)
        except UnicodeEncodeError:
            # A lone surrogate: Django's own url() fails; answer all the same.
            parent = super().url(path.encode("utf-8", "replace").decode())
        base, _, parent_query = parent.partition("?")
        # The name's own query and fragment are kept, but never a raw control
        # character or space (a URL may end up in a header or an attribute).
        query, fragment = _quote_part(query), _quote_part(fragment)
        params = [part for part in (parent_query, query) if part]
        if digest is not None and not versioned:
            params.append(f"{self.query_param}={digest[: self.hash_length]}")
        url = base + ("?" + "&".join(params) if params else query_sep)
        return url + fragment_sep + fragment

    def rewrites_stylesheet(self, name: str) -> bool:
        """
        Whether ``name`` is a stylesheet served rewritten, each static
        reference carrying its own hash: when FreshStaticMiddleware serves
        files (``FRESHSTATIC["SERVE"]``, the default).
        """
        return self.served_files.rewrites(name)

    # -- failures -------------------------------------------------------------------

    def _missing(self, name: str, reason: str) -> None:
        strict = conf.STRICT if self.strict is None else self.strict
        if strict:
            raise ValueError(f"The file '{name}' could not be found with {self!r}.")
        warn_once(name, "Static file %r %s; its URL carries no hash.", name, reason)


class FreshStaticFilesStorage(FreshStaticMixin, StaticFilesStorage):
    """``StaticFilesStorage`` whose URLs carry the content hash: no collectstatic."""


def _quote_part(part: str) -> str:
    return (
        quote(part, safe="=&;%:/?@!$'()*+,~#[]", errors="surrogatepass")
        if part
        else part
    )


# A name, its digest (None: no file), its key in the shared cache and the
# files the digest was computed from.
_Hashed = tuple[str, "str | None", str, "tuple[Dependency, ...]"]


def _can_fork() -> bool:
    """
    Whether this process may fork worker processes: on a POSIX system, with
    no other thread running (a thread holding a lock at fork() would leave
    that lock held in the child forever).
    """
    return hasattr(os, "fork") and threading.active_count() == 1


_HashChunk = Callable[[list[str], "str | None", bool], list[_Hashed]]


class _Children:
    """
    Forked worker processes, each waiting for the generation (``go()``)
    before it reads a file, then hashing its chunk. They only read and hash
    files (no cache, no database) and hand their results back through an
    anonymous temporary file.
    """

    def __init__(self, chunks: list[list[str]], hash_chunk: _HashChunk) -> None:
        self.unforked: list[str] = []  # chunks no process could be made for
        # Each child's pid, the pipe it waits on, its output and its chunk.
        self._children: list[tuple[int, int, IO[bytes], list[str]]] = []
        self._outputs = contextlib.ExitStack()
        self._told = False
        for chunk in chunks:
            output: IO[bytes] = self._outputs.enter_context(
                tempfile.TemporaryFile()  # noqa: SIM115 (closed by the stack)
            )
            reader, writer = os.pipe()
            try:
                pid = os.fork()
            except OSError:  # no more processes: hashed here instead
                os.close(reader)
                os.close(writer)
                self.unforked += chunk
                continue
            if pid == 0:  # pragma: no cover (the child; its coverage is lost)
                # Only the parent may hold a pipe's writing end: a child reads
                # its own until the parent closes it.
                for _pid, other, _output, _chunk in self._children:
                    os.close(other)
                os.close(writer)
                _child(hash_chunk, chunk, reader, output)
            os.close(reader)
            self._children.append((pid, writer, output, chunk))

    def __enter__(self) -> _Children:
        return self

    def go(self, generation: str | None) -> None:
        """Let every child start hashing, under ``generation``."""
        message = pickle.dumps(generation)
        self._told = True
        for _pid, writer, _output, _chunk in self._children:
            try:
                os.write(writer, message)
            finally:
                os.close(writer)

    def results(self) -> Iterator[tuple[list[str], list[_Hashed] | None]]:
        """Each child's chunk and results (None if it failed), once it exits."""
        children, self._children = self._children, []
        for pid, _writer, output, chunk in children:
            _pid, status = os.waitpid(pid, 0)
            yield chunk, _child_results(status, output)

    def __exit__(self, *exc_info: object) -> None:
        # Children left only after a failure here: one never told to go
        # reads the end of its pipe and exits; each is reaped.
        for pid, writer, _output, _chunk in self._children:
            if not self._told:
                os.close(writer)
            os.waitpid(pid, 0)
        self._outputs.close()


def _child(
    hash_chunk: _HashChunk, chunk: list[str], reader: int, output: IO[bytes]
) -> NoReturn:  # pragma: no cover (runs in the child, whose coverage is lost)
    status = 1
    try:
        with os.fdopen(reader, "rb") as pipe:
            message = pipe.read()
        if message:  # else the parent gave up before sending it
            # From this very program's parent process.
            generation = pickle.loads(message)  # noqa: S301
            pickle.dump(hash_chunk(chunk, generation, False), output)
            output.flush()
            status = 0
    finally:
        # Never back into the caller: no atexit, no cleanup of what the
        # parent still uses (cache and database connections, temp files).
        os._exit(status)


def _child_results(status: int, output: IO[bytes]) -> list[_Hashed] | None:
    """What a child that exited with ``status`` wrote; None if it failed."""
    if status != 0:
        return None
    output.seek(0)
    # Written by this very program's child into a file with no name.
    results: list[_Hashed] = pickle.load(output)  # noqa: S301
    return results
