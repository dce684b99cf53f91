"""
The hash cache: Django's cache framework under a rotating generation prefix.

Hashes live under ``<prefix>:<generation>:<digest of name>``. The generation
is itself a cache entry (``<prefix>:generation``); writing a new one
invalidates every hash at once, for every process sharing the cache.

Each storage also keeps a memo of final URLs in a ``State`` tagged with the
generation it was built under. Invalidation never edits a state: it replaces
it. A request that read the generation before an invalidation therefore
writes its result into a state (and under a key) nobody reads any more, so a
hash computed from old bytes can never be stored as current.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import threading
import weakref
from collections.abc import Iterable
from time import monotonic

from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from freshstatic import broadcast, locations
from freshstatic.conf import conf
from freshstatic.signals import static_changed

logger = logging.getLogger("freshstatic")

# Entries of old generations are never read again; let them expire in time.
HASH_TIMEOUT_SECONDS = 7 * 24 * 60 * 60
# Backends whose contents no other process can see.
PER_PROCESS_BACKENDS = (LocMemCache, DummyCache)


class State:
    """One generation as this process sees it, with the URLs memoised in it."""

    __slots__ = ("deadline", "generation", "memo")

    def __init__(self, generation: str | None, deadline: float) -> None:
        # None: unknown (expired, or the cache could not be reached).
        self.generation = generation
        # monotonic() time after which the generation must be read again.
        self.deadline = deadline
        self.memo: dict[str, str] = {}


_instances: weakref.WeakSet[HashCache] = weakref.WeakSet()
_unavailable: set[str] = set()  # cache aliases in an outage
_instances_lock = threading.Lock()


class HashCache:
    """The hashes of one storage, in one cache alias under one key prefix."""

    def __init__(self, alias: str, prefix: str) -> None:
        self.alias = alias
        self.prefix = prefix
        self.generation_key = f"{prefix}:generation"
        # Read lock-free by url(); only ever replaced, under self._lock.
        self.state = State(None, 0.0)
        self._lock = threading.Lock()
        with _instances_lock:
            _instances.add(self)

    def backend(self) -> BaseCache:
        # Django's cache connections are per thread: look it up at each use.
        return caches[self.alias]

    def is_shared(self) -> bool:
        return not isinstance(self.backend(), PER_PROCESS_BACKENDS)

    # -- the generation -------------------------------------------------------

    def refresh(self) -> State:
        """Return the current state, re-reading the generation if it is due."""
        with self._lock:
            state = self.state
            now = monotonic()
            if state.deadline > now:
                return state
            generation = self._read_generation()
            if generation is not None and not self.is_shared():
                # Only this process can change a per-process cache, and it
                # replaces the state directly when it does.
                deadline = math.inf
            else:
                deadline = now + conf.GENERATION_TTL
                if generation is not None:
                    self._listen()
            if generation is not None and generation == state.generation:
                state.deadline = deadline
                return state
            self.state = State(generation, deadline)
            return self.state

    def expire(self) -> None:
        """Drop this process's memo; the next url() reads the generation."""
        with self._lock:
            self.state = State(None, 0.0)

    def rotate(self) -> bool:
        """Start a new generation for every process sharing the cache."""
        generation = _new_generation()
        try:
            backend = self.backend()
            backend.set(self.generation_key, generation, timeout=None)
        except Exception as exc:
            self._failed(exc)
            return False
        self._recovered()
        if broadcast.supports(backend):
            # The rotation stands either way; without the announcement other
            # processes see it within GENERATION_TTL.
            broadcast.announce(self.alias, self.prefix, generation)
        return True

    def _listen(self) -> None:
        """With Redis, hear other processes' rotations as they happen."""
        if broadcast.supports(self.backend()):
            alias, prefix = self.alias, self.prefix
            broadcast.listen(alias, prefix, lambda: _expire_matching(alias, prefix))

    def _read_generation(self) -> str | None:
        try:
            # get_or_set() adds, so processes starting together agree on one.
            generation = self.backend().get_or_set(
                self.generation_key, _new_generation, timeout=None
            )
        except Exception as exc:
            self._failed(exc)
            return None
        self._recovered()
        return generation if isinstance(generation, str) and generation else None

    # -- hashes -----------------------------------------------------------------

    def key(self, state: State, name_key: str) -> str:
        """A cache key safe for any backend (memcached included), any name."""
        digest = hashlib.blake2b(
            name_key.encode("utf-8", "surrogatepass"), digest_size=16
        ).hexdigest()
        return f"{self.prefix}:{state.generation}:{digest}"

    def get(self, state: State, name_key: str) -> str | None:
        if state.generation is None:
            return None
        try:
            value = self.backend().get(self.key(state, name_key))
        except Exception as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value if isinstance(value, str) else None

    def get_many(self, state: State, name_keys: Iterable[str]) -> dict[str, str]:
        if state.generation is None:
            return {}
        keys = {self.key(state, name_key): name_key for name_key in name_keys}
        try:
            found = self.backend().get_many(keys)
        except Exception as exc:
            self._failed(exc)
            return {}
        self._recovered()
        return {
            keys[key]: value for key, value in found.items() if isinstance(value, str)
        }

    def set_many(self, state: State, digests: dict[str, str]) -> None:
        """
        Store hashes computed under ``state``, unless it is no longer current.

        The state was captured before the files were read. If an invalidation
        replaced it since, these hashes may describe old bytes: drop them.
        Even if the invalidation lands right after this check, the entries go
        under the old generation's keys, which nobody reads any more.
        """
        if state.generation is None or state is not self.state or not digests:
            return
        entries = {
            self.key(state, name_key): value for name_key, value in digests.items()
        }
        try:
            self.backend().set_many(entries, timeout=HASH_TIMEOUT_SECONDS)
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()

    # -- failures ---------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        # Once per outage of an alias, however many storages use it.
        if self.alias not in _unavailable:
            _unavailable.add(self.alias)
            logger.warning(
                "The cache %r is unavailable (%s: %s); static URLs are hashed "
                "without it until it answers again.",
                self.alias,
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        if self.alias in _unavailable:
            _unavailable.discard(self.alias)
            logger.warning("The cache %r answers again.", self.alias)


def _reset_locks_after_fork() -> None:
    # A lock held by another thread at fork() would stay held in the child.
    global _instances_lock
    _instances_lock = threading.Lock()
    for hash_cache in list(_instances):
        hash_cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _new_generation() -> str:
    return secrets.token_hex(8)


def _live_instances() -> list[HashCache]:
    with _instances_lock:
        return list(_instances)


def _expire_matching(alias: str, prefix: str) -> None:
    for hash_cache in _live_instances():
        if hash_cache.alias == alias and hash_cache.prefix == prefix:
            hash_cache.expire()


def expire_all() -> None:
    """Drop every memo in this process (the shared hashes stay valid)."""
    for hash_cache in _live_instances():
        hash_cache.expire()


def rotate_all() -> bool:
    """
    Start a new generation in every cache this process uses, then drop the
    memos. False if a cache could not take its new generation.
    """
    instances = _live_instances()
    rotated: dict[tuple[str, str], bool] = {}
    for hash_cache in instances:
        key = (hash_cache.alias, hash_cache.prefix)
        if key not in rotated:
            rotated[key] = hash_cache.rotate()
    locations.forget_real_roots()
    for hash_cache in instances:
        hash_cache.expire()
    return all(rotated.values())


def invalidate(names: tuple[str, ...] | None = None) -> bool:
    """Rotate every generation and announce it with ``static_changed``."""
    rotated = rotate_all()
    static_changed.send(sender=HashCache, names=names)
    return rotated
