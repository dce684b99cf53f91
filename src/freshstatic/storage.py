"""
The storage: ``url(name)`` adds ``?v=<content hash>``, and little else.

The hashed file is the one that will be served: the storage's own copy when
it has one (after collectstatic, or a remote storage), otherwise the
staticfiles finders' first match.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from typing import IO, TYPE_CHECKING, Any

from django.apps import apps
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.checks import Tags, register
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation

from freshstatic import locations
from freshstatic.cache import HashCache, State
from freshstatic.checks import check_storage
from freshstatic.conf import (
    STORAGE_DEFAULTS,
    conf,
    hash_algorithm_error,
    hash_length_error,
    key_prefix_error,
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
WARNED_MAX_ENTRIES = 10_000

_app_missing_warned = False

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
        self._warned: set[str] = set()
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
        Hash many files at once, in ``workers`` threads (one per core by
        default), store the hashes in the cache, and return each name's URL,
        or None for a name with no file. ``progress(n)`` is called as files
        are done.
        """
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
        # hashlib and file reads release the GIL, so threads use every core.
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            results = pool.map(lambda name: self._compute(str(clean[name])), todo)
            for name, digest in zip(todo, results, strict=True):
                digests[name] = digest
                if digest is not None:
                    computed[name_keys[name]] = digest
                if progress is not None:
                    progress(1)
        self.hash_cache.set_many(state, computed)
        return {
            name: self._hashed_url(name, state, digest) if digest else None
            for name, digest in digests.items()
        }

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
        name_key = self._name_key(clean_name)
        digest = self.hash_cache.get(state, name_key)
        if digest is None:
            digest = self._compute(clean_name)
            if digest is None:
                self._missing(clean_name, "could not be found")
                return None
            self.hash_cache.set_many(state, {name_key: digest})
        return digest

    def _hashed_url(self, name: str, state: State, digest: str | None) -> str:
        rest, fragment_sep, fragment = name.partition("#")
        path, query_sep, query = rest.partition("?")
        base, _, parent_query = super().url(path).partition("?")
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

    def _compute(self, name: str) -> str | None:
        """Hash the file that will be served for ``name``, or None if none."""
        try:
            stream = self._open_source(name)
            if stream is None:
                return None
            with stream:
                return hash_stream(stream, self.hash_algorithm)
        except _OutsideRoots as exc:
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

    def _open_source(self, name: str) -> IO[bytes] | None:
        """Open the storage's own copy of ``name``, else the finders' match."""
        roots = locations.allowed_roots(self)
        try:
            own = self.exists(name)
        except (ImproperlyConfigured, SuspiciousFileOperation):
            own = False  # no STATIC_ROOT: the finders serve everything
        if own:
            try:
                local = self.path(name)
            except NotImplementedError:
                local = None  # a remote storage (S3...)
            if local is None or not os.path.exists(local):
                return self.open(name, "rb")
            if os.path.isfile(local):
                return _open_within(local, roots)
        path = locations.first_match(name)
        return None if path is None else _open_within(path, roots)

    # -- failures -------------------------------------------------------------------

    def _missing(self, name: str, reason: str) -> None:
        strict = conf.STRICT if self.strict is None else self.strict
        if strict:
            raise ValueError(f"The file '{name}' could not be found with {self!r}.")
        self._warn_once(
            name, "Static file %r %s; its URL carries no hash.", name, reason
        )

    def _warn_once(self, name: str, message: str, *args: object) -> None:
        if name in self._warned or len(self._warned) >= WARNED_MAX_ENTRIES:
            return
        self._warned.add(name)
        logger.warning(message, *args)


class FreshStaticFilesStorage(FreshStaticMixin, StaticFilesStorage):
    """``StaticFilesStorage`` whose URLs carry the content hash: no collectstatic."""


class _OutsideRoots(Exception):
    pass


def _open_within(path: str, roots: tuple[str, ...]) -> IO[bytes]:
    if not locations.within(path, roots):
        raise _OutsideRoots(os.path.realpath(path))
    return open(path, "rb")


def _warn_if_app_missing() -> None:
    global _app_missing_warned
    if not _app_missing_warned and not apps.is_installed("freshstatic"):
        _app_missing_warned = True
        logger.warning(
            "A freshstatic storage is in use but 'freshstatic' is not in "
            "INSTALLED_APPS: no watcher starts, so changed files keep their old "
            "hash until freshstatic.invalidate() or 'hashstatic --rotate'."
        )
