"""
Rotations announced through Redis pub/sub.

With a django-redis cache, every rotation is also published on
``<prefix>:rotated``; each process that uses the cache listens (one daemon
thread per cache and prefix) and drops its memo at once, instead of within
``GENERATION_TTL``. The TTL stays as the fallback for a missed message.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from django.core.cache import BaseCache, caches

logger = logging.getLogger("freshstatic")

# How long to wait before listening again after Redis failed, at most.
MAX_BACKOFF_SECONDS = 5.0
# How often the listener looks up from waiting (to notice a changed setting).
POLL_SECONDS = 1.0

_listeners: dict[tuple[str, str], threading.Thread] = {}
_announce_failed: set[str] = set()
_lock = threading.Lock()


def supports(backend: BaseCache) -> bool:
    return type(backend).__module__.split(".")[0] == "django_redis"


def channel(prefix: str) -> str:
    return f"{prefix}:rotated"


def announce(alias: str, prefix: str, generation: str) -> None:
    """Tell every listening process that ``prefix`` has a new generation."""
    from django_redis import get_redis_connection

    try:
        get_redis_connection(alias).publish(channel(prefix), generation)
    except Exception as exc:  # e.g. an ACL without pub/sub rights
        if alias not in _announce_failed:
            _announce_failed.add(alias)
            logger.warning(
                "Rotations cannot be announced on %r (%s: %s); other processes "
                "see them within GENERATION_TTL instead.",
                alias,
                type(exc).__name__,
                exc,
            )
    else:
        _announce_failed.discard(alias)


def listen(alias: str, prefix: str, on_rotation: Callable[[], None]) -> None:
    """Call ``on_rotation`` whenever a rotation is announced (idempotent)."""
    key = (alias, prefix)
    with _lock:
        thread = _listeners.get(key)
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(
            target=_run,
            args=(alias, prefix, on_rotation),
            name=f"freshstatic-listen-{alias}",
            daemon=True,
        )
        _listeners[key] = thread
        thread.start()


def _run(alias: str, prefix: str, on_rotation: Callable[[], None]) -> None:
    from django_redis import get_redis_connection

    backoff = 0.25
    waiting = threading.Event()  # never set: a wait that wakes on time only
    reconnecting = False
    while _still_redis(alias):
        try:
            pubsub = get_redis_connection(alias).pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(channel(prefix))
                if reconnecting:
                    # A rotation may have been missed while Redis was away.
                    on_rotation()
                reconnecting = True
                backoff = 0.25
                while _still_redis(alias):
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        on_rotation()
            finally:
                pubsub.close()
        except Exception as exc:  # Redis down: the TTL covers; try again soon
            logger.debug("Listening for rotations on %r failed: %s", alias, exc)
        waiting.wait(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
    with _lock:
        if _listeners.get((alias, prefix)) is threading.current_thread():
            del _listeners[(alias, prefix)]


def _still_redis(alias: str) -> bool:
    try:
        return supports(caches[alias])
    except Exception:
        return False


def _forget_after_fork() -> None:
    # The listening threads do not survive fork(): listen anew when needed.
    global _lock
    _lock = threading.Lock()
    _listeners.clear()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)
