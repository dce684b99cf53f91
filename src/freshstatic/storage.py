"""
The storage: ``url(name)`` adds ``?v=<content hash>``, and little else.

The hashed file is the one that will be served: the storage's own copy when
it has one (after collectstatic, or a remote storage), otherwise the
staticfiles finders' first match.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.checks import Tags, register
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage

from freshstatic import css, locations
from freshstatic.cache import HashCache, State
from freshstatic.checks import check_storage
from freshstatic.conf import (
    STORAGE_DEFAULTS,
    conf,
    hash_algorithm_error,
    hash_length_error,
    key_prefix_error,
    middleware_serves,
    query_param_error,
)
from freshstatic.hashing import hash_stream

if TYPE_CHECKING:
    from django.core.files.storage import Storage

    _Base = Storage
else:
    _Base = object

logger = logging.getLogger("freshstatic")

# Names are written by templates, so the memo stays small; this bound only
# matters if a template feeds user input to {% static %}.
MEMO_MAX_ENTRIES = 100_000
# Rewritten stylesheets kept per storage, by file identity and generation.
STYLESHEET_CACHE_ENTRIES = 512
WARNED_MAX_ENTRIES = 10_000

_app_missing_warned = False
_warned: set[str] = set()

# Also registered by AppConfig.ready(); registering it here too is the only
# way freshstatic.E001 (storage used, app not installed) can be reported.
register(check_storage, Tags.staticfiles)


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
        **kwargs: Any,
    ) -> None:
        errors = [
            error
            for error in (
                hash_algorithm_error(hash_algorithm),
                hash_length_error(hash_length, hash_algorithm),
                key_prefix_error(key_prefix),
                query_param_error(query_param),
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
        self.strict = strict
        self.hash_cache = HashCache(cache_alias, key_prefix)
        self._stylesheets: dict[tuple[object, ...], tuple[bytes, str]] = {}
        _warn_if_app_missing()

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
            url = self._hashed_url(name, state, self._digest(name, state))
        return url

    # -- many names at once -------------------------------------------------------

    def urls(
        self,
        names: Iterable[str],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, str | None]:
        """
        Like ``hash_names()``, and return each name's URL (None for a name
        with no file).
        """
        state, digests = self._hash_names(names, workers, progress)
        return {
            name: self._hashed_url(name, state, digest) if digest else None
            for name, digest in digests.items()
        }

    def hash_names(
        self,
        names: Iterable[str],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, str | None]:
        """
        Hash many files at once, in ``workers`` threads (one per core by
        default), and store the hashes in the cache; return each name's full
        hex digest, or None for a name with no file. ``progress(n)`` is called
        as files are done.
        """
        return self._hash_names(names, workers, progress)[1]

    def _hash_names(
        self,
        names: Iterable[str],
        workers: int | None,
        progress: Callable[[int], None] | None,
    ) -> tuple[State, dict[str, str | None]]:
        state = self.hash_cache.refresh()
        wanted = list(dict.fromkeys(names))
        clean = {name: locations.clean_name(name) for name in wanted}
        name_keys = {name: self._name_key(path) for name, path in clean.items() if path}
        digests: dict[str, str | None] = {}
        cached = self.hash_cache.get_many(state, name_keys.values())
        todo: list[str] = []
        for name in wanted:
            if name in name_keys and name_keys[name] in cached:
                digests[name] = cached[name_keys[name]]
            elif name in name_keys:
                todo.append(name)
            else:
                digests[name] = None
        if progress is not None and len(wanted) > len(todo):
            progress(len(wanted) - len(todo))
        computed: dict[str, str] = {}
        # hashlib and file reads release the GIL, so threads use every core;
        # one long task per thread keeps the pool's own overhead out of it.
        threads = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        chunks = [todo[index::threads] for index in range(threads)]
        progress_lock = threading.Lock()

        def hash_chunk(chunk: list[str]) -> list[tuple[str, str | None]]:
            results = []
            for name in chunk:
                results.append((name, self._compute(str(clean[name]), state)))
                if progress is not None:
                    with progress_lock:
                        progress(1)
            return results

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for results in pool.map(hash_chunk, chunks):
                for name, digest in results:
                    digests[name] = digest
                    if digest is not None:
                        computed[name_keys[name]] = digest
        self.hash_cache.set_many(state, computed)
        return state, digests

    # -- the cold path ------------------------------------------------------------

    def _name_key(self, clean_name: str) -> str:
        return f"{self.hash_algorithm}:{clean_name}"

    def _digest(self, name: str, state: State) -> str | None:
        """The full hex digest for ``name`` (query and fragment ignored)."""
        path = name.partition("#")[0].partition("?")[0]
        clean_name = locations.clean_name(path)
        if clean_name is None:
            self._missing(path, "is outside the static locations and is never read")
            return None
        digest = self._lookup(clean_name, state)
        if digest is None:
            self._missing(clean_name, "could not be found")
        return digest

    def _lookup(self, clean_name: str, state: State) -> str | None:
        """The cached digest of a clean name, computed and stored if missing."""
        name_key = self._name_key(clean_name)
        digest = self.hash_cache.get(state, name_key)
        if digest is None:
            digest = self._compute(clean_name, state)
            if digest is not None:
                self.hash_cache.set_many(state, {name_key: digest})
        return digest

    def _hashed_url(self, name: str, state: State, digest: str | None) -> str:
        rest, fragment_sep, fragment = name.partition("#")
        path, query_sep, query = rest.partition("?")
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
        if digest is not None:
            params.append(f"{self.query_param}={digest[: self.hash_length]}")
        url = base + ("?" + "&".join(params) if params else query_sep)
        url += fragment_sep + fragment
        if len(state.memo) < MEMO_MAX_ENTRIES:
            # Into the state captured before hashing: if an invalidation has
            # replaced it meanwhile, this entry is simply never read.
            state.memo[name] = url
        return url

    def _compute(self, name: str, state: State) -> str | None:
        """Hash the bytes that will be served for ``name``, or None if none."""
        try:
            source = self._source(name)
            if source is None:
                return None
            kind, location = source
            if kind == "storage":  # served by the storage itself, as it is
                with self.open(location, "rb") as stream:
                    return hash_stream(stream, self.hash_algorithm)
            with locations.open_within(
                location, locations.allowed_roots(self)
            ) as stream:
                if self.rewrites_stylesheet(name):
                    return self._stylesheet(name, stream, state)[1]
                return hash_stream(stream, self.hash_algorithm)
        except locations.NotAFile:
            pass  # a folder or a device where a file was expected: not found
        except locations.OutsideRoots as exc:
            self._warn_once(
                name,
                "Static file %r resolves to %r, outside the static locations "
                "(a symlink?); it is never read and its URL carries no hash.",
                name,
                str(exc),
            )
        except Exception as exc:  # a page must never fail because of a file
            self._warn_once(
                name,
                "Static file %r could not be read (%s: %s); its URL carries no hash.",
                name,
                type(exc).__name__,
                exc,
            )
        return None

    def _source(self, name: str) -> tuple[str, str] | None:
        """
        What will be served for ``name``: ``("storage", name)`` for the
        storage's own copy when it is not a local file (S3...), otherwise
        ``("local", path)``: the storage's own file, else the finders' first
        match. Confinement is checked when the file is opened.
        """
        if isinstance(self, FileSystemStorage) and not self.base_location:
            own = False  # no STATIC_ROOT: the finders serve everything
        else:
            try:
                own = self.exists(name)
            except (ImproperlyConfigured, SuspiciousFileOperation):
                own = False
        if own:
            try:
                local = self.path(name)
            except NotImplementedError:
                return ("storage", name)
            if not os.path.lexists(local):
                return ("storage", name)  # e.g. InMemoryStorage
            if os.path.isfile(local):
                return ("local", local)
            # A folder or a broken symlink: not a file to serve.
        path = locations.first_match(name)
        return None if path is None else ("local", path)

    # -- stylesheets ----------------------------------------------------------------

    def rewrites_stylesheet(self, name: str) -> bool:
        """
        Whether ``name`` is a stylesheet served rewritten, each static
        reference carrying its own hash: when FreshStaticMiddleware serves
        files (``FRESHSTATIC["SERVE"]``, the default).
        """
        return name.lower().endswith(".css") and middleware_serves()

    def served_file(self, name: str) -> str | None:
        """
        The local file served for static ``name``, or None (never raises).
        Open it with ``locations.open_within(path, locations.allowed_roots(
        storage))``, which refuses it if it resolves outside the static roots.
        """
        clean_name = locations.clean_name(name)
        if clean_name is None:
            return None
        try:
            source = self._source(clean_name)
        except Exception:
            return None
        return source[1] if source is not None and source[0] == "local" else None

    def stylesheet(self, name: str, stream: IO[bytes]) -> tuple[bytes, str]:
        """The rewritten body of stylesheet ``name`` read from ``stream``,
        and its full hex digest."""
        state = self.hash_cache.state
        if state.deadline <= monotonic():
            state = self.hash_cache.refresh()
        return self._stylesheet(name, stream, state)

    def _stylesheet(
        self, name: str, stream: IO[bytes], state: State
    ) -> tuple[bytes, str]:
        version = locations.file_identity(os.fstat(stream.fileno()))
        # No generation (the cache unreachable): nothing to tie a body to.
        key = None if state.generation is None else (name, *version, state.generation)
        cached = self._stylesheets.get(key) if key else None
        if cached is not None:
            return cached
        raw = stream.read()
        if locations.file_identity(os.fstat(stream.fileno())) != version:
            key = None  # rewritten while read: serve what was read, keep nothing
        _rewriting.stack = stack = getattr(_rewriting, "stack", [])
        stack.append(name)
        try:
            text = raw.decode("utf-8", "surrogateescape")
            body = css.rewrite(
                text, lambda reference: self._reference(name, reference, state, stack)
            ).encode("utf-8", "surrogateescape")
        finally:
            stack.pop()
        result = (body, hashlib.new(self.hash_algorithm, body).hexdigest())
        if key is not None:
            if len(self._stylesheets) >= STYLESHEET_CACHE_ENTRIES:
                self._stylesheets.clear()
            self._stylesheets[key] = result
        return result

    def _reference(
        self, stylesheet: str, reference: str, state: State, stack: list[str]
    ) -> str:
        """``reference`` with ``?v=<its hash>``, or unchanged if it is no
        static file (with a warning) or closes an @import cycle."""
        path_part, fragment_sep, fragment = reference.partition("#")
        path, _, query = path_part.partition("?")
        target = unquote(path)
        if target.startswith("/"):
            static_path = urlsplit(settings.STATIC_URL or "/").path
            if not target.startswith(static_path):
                return reference  # a root-relative URL that is not static
            target = target[len(static_path) :]
        else:
            target = posixpath.join(posixpath.dirname(stylesheet), target)
        clean_name = locations.clean_name(target)
        if clean_name in stack:
            return reference  # an @import cycle: stop here
        digest = None if clean_name is None else self._lookup(clean_name, state)
        if digest is None:
            self._warn_once(
                f"{stylesheet}\0{reference}",
                "Stylesheet %r references %r, which is not a static file; the "
                "reference is left as it is.",
                stylesheet,
                reference,
            )
            return reference
        params = [
            part
            for part in (query, f"{self.query_param}={digest[: self.hash_length]}")
            if part
        ]
        return f"{path}?{'&'.join(params)}{fragment_sep}{fragment}"

    # -- failures -------------------------------------------------------------------

    def _missing(self, name: str, reason: str) -> None:
        strict = conf.STRICT if self.strict is None else self.strict
        if strict:
            raise ValueError(f"The file '{name}' could not be found with {self!r}.")
        self._warn_once(
            name, "Static file %r %s; its URL carries no hash.", name, reason
        )

    def _warn_once(self, name: str, message: str, *args: object) -> None:
        # Once per name and process, whichever storage instance noticed.
        if name in _warned or len(_warned) >= WARNED_MAX_ENTRIES:
            return
        _warned.add(name)
        logger.warning(message, *args)


class FreshStaticFilesStorage(FreshStaticMixin, StaticFilesStorage):
    """``StaticFilesStorage`` whose URLs carry the content hash: no collectstatic."""


# The stylesheets being rewritten in this thread, to stop @import cycles.
_rewriting = threading.local()


def _quote_part(part: str) -> str:
    return (
        quote(part, safe="=&;%:/?@!$'()*+,~#[]", errors="surrogatepass")
        if part
        else part
    )


def _warn_if_app_missing() -> None:
    global _app_missing_warned
    if not _app_missing_warned and not apps.is_installed("freshstatic"):
        _app_missing_warned = True
        logger.warning(
            "A freshstatic storage is in use but 'freshstatic' is not in "
            "INSTALLED_APPS: no watcher starts, so changed files keep their old "
            "hash until freshstatic.invalidate() or 'hashstatic --rotate'."
        )
