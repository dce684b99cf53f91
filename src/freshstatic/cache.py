"""
The hash cache: Django's cache framework under a rotating generation prefix.

Digests live under ``<prefix>:<generation>:<digest of key>``. The generation
is itself a cache entry (``<prefix>:generation``); writing a new one
invalidates every digest at once, for every process sharing the cache.

A shared digest is stored with the files it was computed from and their
identities, and used only if they still match the files this process would
serve: another release sharing the cache, or a cache restored from an old
snapshot, can never hand over a digest of other bytes. A generation this
process has seen replaced is never adopted again: it is rotated away.

Each storage also keeps a memo of final URLs in a ``State`` tagged with the
generation it was built under. Invalidation never edits a state: it replaces
it. A request that read the generation before an invalidation therefore
writes its result into a state (and under a key) nobody reads any more.

No network call is made under a lock other threads wait on, and a cache
that fails or stalls is left alone (URLs are hashed without it) until one
probe, at most once per ``GENERATION_TTL``, finds it answering again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any, TypeVar

from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from freshstatic import broadcast, locations
from freshstatic.conf import conf
from freshstatic.served import Dependency
from freshstatic.signals import static_changed

logger = logging.getLogger("freshstatic")

# Entries of old generations are never read again; let them expire in time.
HASH_TIMEOUT_SECONDS = 7 * 24 * 60 * 60
# Backends whose contents no other process can see.
PER_PROCESS_BACKENDS = (LocMemCache, DummyCache)
# What one generation's memo of URLs may take in this process. Names that are
# not a static file's own clean name (missing files, names with a query or a
# fragment: user input passed to static() can make endless ones) share a
# smaller budget, and are forgotten all at once when it is spent.
MEMO_MAX_BYTES = 16 * 1024 * 1024
ODD_MEMO_MAX_BYTES = 1024 * 1024
# A memo entry's own cost beside its characters (two str headers, a slot).
_MEMO_ENTRY_OVERHEAD_BYTES = 200
# Cache calls of one process running at once; more threads do without it.
MAX_CALLS_IN_FLIGHT = 2
# A cache call still running after this long is taken as a stall: other
# threads stop waiting on the cache until it answers again.
STALL_SECONDS = 0.5
# After a failure, how long threads do without the cache before one probes
# it again: GENERATION_TTL, within these bounds.
MIN_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
# Generations this process remembers having seen replaced.
REPLACED_GENERATIONS = 64
# The shape of a shared entry, so that a change of format is never misread.
_ENTRY_FORMAT = "freshstatic-2"

_T = TypeVar("_T")


class State:
    """One generation as this process sees it, with the URLs memoised in it."""

    __slots__ = ("deadline", "generation", "memo", "memo_bytes", "odd", "odd_bytes")

    def __init__(self, generation: str | None, deadline: float) -> None:
        # None: unknown (expired, or the cache could not be reached).
        self.generation = generation
        # monotonic() time after which the generation must be read again.
        self.deadline = deadline
        self.memo: dict[str, str] = {}
        self.memo_bytes = 0
        self.odd: dict[str, str] = {}
        self.odd_bytes = 0

    def remember(self, name: str, url: str, *, canonical: bool) -> None:
        """
        Memoise ``url``. ``canonical``: ``name`` is an existing file's clean
        name, of which there are only as many as files.
        """
        cost = len(name) + len(url) + _MEMO_ENTRY_OVERHEAD_BYTES
        if canonical:
            if self.memo_bytes + cost <= MEMO_MAX_BYTES:
                self.memo[name] = url
                self.memo_bytes += cost
            return
        if self.odd_bytes + cost > ODD_MEMO_MAX_BYTES:
            self.odd = {}
            self.odd_bytes = 0
        self.odd[name] = url
        self.odd_bytes += cost

    def recall(self, name: str) -> str | None:
        return self.memo.get(name) or self.odd.get(name)


class Guard:
    """
    Keeps threads off a cache that fails or stalls, so that a hung cache
    holds up at most MAX_CALLS_IN_FLIGHT requests of a process. Healthy, up
    to that many calls run at once, and none once one has been running for
    STALL_SECONDS; a thread that may not call does without the cache (it
    hashes the file itself). After a failure, one probe at a time, at most
    once per GENERATION_TTL.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, float] = {}
        self._next_token = 0
        self._failing = False
        self._retry_at = 0.0

    def enter(self) -> int | None:
        """A token for a call allowed now, or None to do without the cache."""
        now = monotonic()
        with self._lock:
            if self._failing:
                if now < self._retry_at or self._running:
                    return None
            elif len(self._running) >= MAX_CALLS_IN_FLIGHT or (
                self._running and now - min(self._running.values()) > STALL_SECONDS
            ):
                return None
            self._next_token += 1
            self._running[self._next_token] = now
            return self._next_token

    def enter_always(self) -> int | None:
        """
        A token for a call that must not be skipped for being one too many
        (a rotation): refused only while the cache is known to be failing.
        """
        now = monotonic()
        with self._lock:
            if self._failing and (now < self._retry_at or self._running):
                return None
            self._next_token += 1
            self._running[self._next_token] = now
            return self._next_token

    def leave(self, token: int, *, ok: bool) -> None:
        with self._lock:
            self._running.pop(token, None)
            if ok:
                self._failing = False
            else:
                self._failing = True
                self._retry_at = monotonic() + min(
                    max(conf.GENERATION_TTL, MIN_RETRY_SECONDS), MAX_RETRY_SECONDS
                )


class History:
    """The generations of one alias and prefix this process has seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: str | None = None
        self._replaced: deque[str] = deque(maxlen=REPLACED_GENERATIONS)

    def saw(self, generation: str) -> None:
        with self._lock:
            if self.last is not None and self.last != generation:
                self._replaced.append(self.last)
            self.last = generation

    def was_replaced(self, generation: str) -> bool:
        with self._lock:
            return generation in self._replaced


_guards: dict[str, Guard] = {}
_histories: dict[tuple[str, str], History] = {}
_instances: weakref.WeakSet[HashCache] = weakref.WeakSet()
_unavailable: set[str] = set()  # cache aliases in an outage
_instances_lock = threading.Lock()


def _guard(alias: str) -> Guard:
    with _instances_lock:
        guard = _guards.get(alias)
        if guard is None:
            guard = _guards[alias] = Guard()
        return guard


class HashCache:
    """The digests of one storage, in one cache alias under one key prefix."""

    def __init__(self, alias: str, prefix: str) -> None:
        self.alias = alias
        self.prefix = prefix
        self.generation_key = f"{prefix}:generation"
        # Read lock-free by url(); only ever replaced, under self._lock.
        self.state = State(None, 0.0)
        self._lock = threading.Lock()  # held for no I/O
        self._refreshing = threading.Lock()  # one reader of the generation
        # Whether verify() found the cache failing: rotate once it answers.
        self._lost = False
        # Counts expire()/recheck() calls: a generation read that started
        # before one of them must not be trusted for a whole TTL.
        self._invalidations = 0
        with _instances_lock:
            _instances.add(self)
            self.history = _histories.setdefault((alias, prefix), History())

    def backend(self) -> BaseCache:
        # Django's cache connections are per thread: look it up at each use.
        return caches[self.alias]

    def is_shared(self) -> bool:
        return not isinstance(self.backend(), PER_PROCESS_BACKENDS)

    def _call(self, operation: Callable[[BaseCache], _T]) -> tuple[bool, _T | None]:
        """Run ``operation`` on the backend unless it is failing or stalled."""
        guard = _guard(self.alias)
        return self._run(operation, guard, guard.enter())

    def _call_always(
        self, operation: Callable[[BaseCache], _T]
    ) -> tuple[bool, _T | None]:
        """Run ``operation`` on the backend unless it is known to fail."""
        guard = _guard(self.alias)
        return self._run(operation, guard, guard.enter_always())

    def _run(
        self, operation: Callable[[BaseCache], _T], guard: Guard, token: int | None
    ) -> tuple[bool, _T | None]:
        if token is None:
            return False, None
        try:
            result = operation(self.backend())
        except Exception as exc:
            guard.leave(token, ok=False)
            self._failed(exc)
            return False, None
        guard.leave(token, ok=True)
        self._recovered()
        return True, result

    # -- the generation -------------------------------------------------------

    def refresh(self) -> State:
        """
        Return the current state, re-reading the generation if it is due.
        While another thread reads it, the state at hand is used as it is.
        """
        state = self.state
        now = monotonic()
        if state.deadline > now:
            return state
        if not self._refreshing.acquire(blocking=False):
            return state
        try:
            invalidations = self._invalidations
            generation = self._read_generation()
            if generation is not None and self.history.was_replaced(generation):
                generation = self._replace_returned(generation)
            if generation is not None:
                self.history.saw(generation)
            if generation is not None and not self.is_shared():
                # Only this process can change a per-process cache, and it
                # replaces the state directly when it does.
                deadline = math.inf
            else:
                deadline = monotonic() + conf.GENERATION_TTL
                if generation is not None:
                    self._listen()
            with self._lock:
                if self._invalidations != invalidations:
                    deadline = 0.0  # told of a rotation meanwhile: read again
                current = self.state
                if generation is not None and generation == current.generation:
                    current.deadline = deadline
                    return current
                self.state = State(generation, deadline)
                return self.state
        finally:
            self._refreshing.release()

    def expire(self) -> None:
        """Drop this process's memo; the next url() reads the generation."""
        with self._lock:
            self._invalidations += 1
            self.state = State(None, 0.0)

    def recheck(self) -> None:
        """Read the generation again at the next url(); keep the memo if it
        is unchanged (a rotation announced, or possibly missed)."""
        with self._lock:
            self._invalidations += 1
            self.state.deadline = 0.0

    def rotate(self) -> bool:
        """Start a new generation for every process sharing the cache."""
        generation = _new_generation()
        ok, _ = self._call_always(
            lambda backend: backend.set(self.generation_key, generation, timeout=None)
        )
        if not ok:
            return False
        self.history.saw(generation)
        self._announce(generation)
        return True

    def verify(self) -> None:
        """
        For a watcher: read the shared generation, and start a new one when
        the cache answers again after failing, comes back empty, or holds a
        generation seen replaced (restored from an older snapshot): what it
        holds may predate changes made meanwhile.
        """
        if not self.is_shared():
            return
        # Refused only while the cache is known to fail: never for being busy.
        ok, generation = self._call_always(
            lambda backend: backend.get(self.generation_key)
        )
        if not ok:
            self._lost = True
            return
        if (
            self._lost
            or not isinstance(generation, str)
            or self.history.was_replaced(generation)
        ):
            if self.rotate():
                self._lost = False
                _recheck_matching(self.alias, self.prefix)
            return
        self.history.saw(generation)

    def _replace_returned(self, generation: str) -> str | None:
        """
        ``generation`` was replaced before and is back: the cache was restored
        from an older snapshot (or failed over to a lagging replica). Its
        digests may describe old files; start a new generation instead.
        """
        logger.warning(
            "The cache %r holds a generation of static hashes that was replaced "
            "before (restored from an older snapshot?); starting a new one.",
            self.alias,
        )
        new = _new_generation()
        ok, _ = self._call(
            lambda backend: backend.set(self.generation_key, new, timeout=None)
        )
        if not ok:
            return None
        self.history.saw(new)
        self._announce(new)
        return new

    def _announce(self, generation: str) -> None:
        if broadcast.supports(self.backend()):
            # The rotation stands either way; without the announcement other
            # processes see it within GENERATION_TTL.
            broadcast.announce(self.alias, self.prefix, generation)

    def _listen(self) -> None:
        """With Redis, hear other processes' rotations as they happen."""
        if broadcast.supports(self.backend()):
            alias, prefix = self.alias, self.prefix
            broadcast.listen(alias, prefix, lambda: _recheck_matching(alias, prefix))

    def _read_generation(self) -> str | None:
        # get_or_set() adds, so processes starting together agree on one.
        _ok, generation = self._call(
            lambda backend: backend.get_or_set(
                self.generation_key, _new_generation, timeout=None
            )
        )
        return generation if isinstance(generation, str) and generation else None

    # -- digests ----------------------------------------------------------------

    def key(self, state: State, name_key: str) -> str:
        """A cache key safe for any backend (memcached included), any name."""
        digest = hashlib.blake2b(
            name_key.encode("utf-8", "surrogatepass"), digest_size=16
        ).hexdigest()
        return f"{self.prefix}:{state.generation}:{digest}"

    def shared(self, state: State) -> SharedDigests | None:
        """The digests shared under ``state``'s generation, if it is known."""
        return None if state.generation is None else SharedDigests(self, state)

    def get_many(
        self, state: State, name_keys: Iterable[str]
    ) -> dict[str, tuple[str, tuple[Dependency, ...]]]:
        """The entries found for ``name_keys``; check them before use."""
        if state.generation is None:
            return {}
        keys = {self.key(state, name_key): name_key for name_key in name_keys}
        if not keys:
            return {}
        _ok, found = self._call(lambda backend: backend.get_many(keys))
        entries = {}
        for key, value in (found or {}).items():
            entry = _entry(value)
            if entry is not None:
                entries[keys[key]] = entry
        return entries

    def set_many(
        self, state: State, entries: dict[str, tuple[str, tuple[Dependency, ...]]]
    ) -> None:
        """
        Store digests computed under ``state``, each with the files it was
        computed from, unless the state is no longer current.

        The state was captured before the files were read. If an invalidation
        replaced it since, these digests may describe old bytes: drop them.
        Even if the invalidation lands right after this check, the entries go
        under the old generation's keys, which nobody reads any more (and the
        files they name say what they describe).
        """
        if state.generation is None or state is not self.state or not entries:
            return
        values = {
            self.key(state, name_key): (_ENTRY_FORMAT, digest, files)
            for name_key, (digest, files) in entries.items()
        }
        self._call(
            lambda backend: backend.set_many(values, timeout=HASH_TIMEOUT_SECONDS)
        )

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


class SharedDigests:
    """The shared digests of one storage under one generation."""

    def __init__(self, hash_cache: HashCache, state: State) -> None:
        self.hash_cache = hash_cache
        self.state = state

    def get(self, key: str) -> tuple[str, tuple[Dependency, ...]] | None:
        cache_key = self.hash_cache.key(self.state, key)
        _ok, value = self.hash_cache._call(lambda backend: backend.get(cache_key))
        return _entry(value)

    def set(self, key: str, digest: str, files: tuple[Dependency, ...]) -> None:
        self.hash_cache.set_many(self.state, {key: (digest, files)})


def _entry(value: Any) -> tuple[str, tuple[Dependency, ...]] | None:
    """A stored entry as (digest, files), or None if it is not one of ours."""
    if (
        not isinstance(value, tuple)
        or len(value) != 3
        or value[0] != _ENTRY_FORMAT
        or not isinstance(value[1], str)
        or not isinstance(value[2], tuple)
    ):
        return None
    files = value[2]
    for item in files:
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], tuple)
        ):
            return None
    return value[1], files


def _reset_locks_after_fork() -> None:
    # A lock held by another thread at fork() would stay held in the child.
    global _instances_lock
    _instances_lock = threading.Lock()
    _guards.clear()
    for history in _histories.values():
        history._lock = threading.Lock()
    for hash_cache in list(_instances):
        hash_cache._lock = threading.Lock()
        hash_cache._refreshing = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _new_generation() -> str:
    return secrets.token_hex(8)


def _live_instances() -> list[HashCache]:
    with _instances_lock:
        return list(_instances)


def _recheck_matching(alias: str, prefix: str) -> None:
    for hash_cache in _live_instances():
        if hash_cache.alias == alias and hash_cache.prefix == prefix:
            hash_cache.recheck()


def verify_all() -> None:
    """verify() every cache this process uses, once per alias and prefix."""
    seen: set[tuple[str, str]] = set()
    for hash_cache in _live_instances():
        key = (hash_cache.alias, hash_cache.prefix)
        if key not in seen:
            seen.add(key)
            hash_cache.verify()


def expire_all() -> None:
    """
    Drop every memo in this process (the shared hashes stay valid), and try
    every cache again at once (the cache settings may have changed).
    """
    with _instances_lock:
        _guards.clear()
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
