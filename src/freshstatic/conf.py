"""
Process-wide settings, read from ``settings.FRESHSTATIC`` on every access.

Nothing here is read at import time, so ``override_settings(FRESHSTATIC=...)``
takes effect immediately. Options that belong to one storage (hash algorithm,
length, cache alias...) are keyword arguments of the storage instead, in
``STORAGES["staticfiles"]["OPTIONS"]``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Start a watcher thread: "auto" (runserver only), True (every server
    # process) or False.
    "WATCH": "auto",
    # Seconds of quiet before a burst of file events becomes one batch.
    "DEBOUNCE": 0.02,
    # Use watchdog's polling observer: False, True (1 s) or an interval in s.
    "POLL": False,
    # With a shared cache, how often (s) a process re-reads the generation.
    "GENERATION_TTL": 1.0,
    # Raise ValueError for a missing file instead of returning the plain URL.
    "STRICT": False,
    # FreshStaticMiddleware serves static files itself (and rewrites the
    # references in stylesheets); False leaves serving to what follows it.
    "SERVE": True,
}

# Storage options (STORAGES["staticfiles"]["OPTIONS"]) and their defaults.
STORAGE_DEFAULTS: dict[str, Any] = {
    "hash_algorithm": "sha256",
    "hash_length": 12,
    "query_param": "v",
    "cache_alias": "default",
    "key_prefix": "freshstatic",
    "strict": None,
}

# Variable-length digests need an explicit size; they make poor cache busters.
_UNSUPPORTED_ALGORITHMS = frozenset({"shake_128", "shake_256"})
MIN_HASH_LENGTH = 6


class Settings:
    """Typed, call-time view of ``settings.FRESHSTATIC`` merged over DEFAULTS."""

    # An invalid value (reported by the freshstatic.E006 check) falls back to
    # the default, so that a typo never takes pages down.

    def _get(self, key: str) -> Any:
        user = getattr(settings, "FRESHSTATIC", None)
        return user.get(key, DEFAULTS[key]) if isinstance(user, dict) else DEFAULTS[key]

    def _seconds(self, key: str, minimum: float = 0.0) -> float:
        value = self._get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value < minimum
        ):
            return float(DEFAULTS[key])
        return float(value)

    @property
    def WATCH(self) -> bool | Literal["auto"]:
        value = self._get("WATCH")
        return value if isinstance(value, bool) else "auto"

    @property
    def DEBOUNCE(self) -> float:
        return self._seconds("DEBOUNCE")

    @property
    def POLL(self) -> float | None:
        """The polling interval in seconds, or None to use native events."""
        value = self._get("POLL")
        if value is True:
            return 1.0
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value > 0
        ):
            return float(value)
        return None

    @property
    def GENERATION_TTL(self) -> float:
        return self._seconds("GENERATION_TTL")

    @property
    def STRICT(self) -> bool:
        return bool(self._get("STRICT"))

    @property
    def SERVE(self) -> bool:
        return bool(self._get("SERVE"))


conf = Settings()


MIDDLEWARE_PATH = "freshstatic.middleware.FreshStaticMiddleware"


def middleware_serves() -> bool:
    """Whether FreshStaticMiddleware is installed and serves static files."""
    return conf.SERVE and MIDDLEWARE_PATH in (settings.MIDDLEWARE or ())


def setting_errors() -> list[str]:
    """Describe every invalid key or value in ``settings.FRESHSTATIC``."""
    user = getattr(settings, "FRESHSTATIC", None)
    if user is None:
        return []
    if not isinstance(user, dict):
        return [f"FRESHSTATIC must be a dict, not {type(user).__name__}."]
    errors = [
        f"FRESHSTATIC has an unknown key {key!r}."
        for key in sorted(user, key=str)
        if key not in DEFAULTS
    ]
    watch = user.get("WATCH", "auto")
    if watch != "auto" and not isinstance(watch, bool):
        errors.append(
            f"FRESHSTATIC['WATCH'] must be 'auto', True or False, not {watch!r}."
        )
    for key in ("DEBOUNCE", "GENERATION_TTL"):
        value = user.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            errors.append(
                f"FRESHSTATIC[{key!r}] must be a number of seconds >= 0, not {value!r}."
            )
    for key in ("STRICT", "SERVE"):
        if not isinstance(user.get(key, False), bool):
            errors.append(
                f"FRESHSTATIC[{key!r}] must be True or False, not {user[key]!r}."
            )
    poll = user.get("POLL", False)
    if not isinstance(poll, bool) and (not isinstance(poll, (int, float)) or poll <= 0):
        errors.append(
            f"FRESHSTATIC['POLL'] must be True, False or seconds > 0, not {poll!r}."
        )
    return errors


def hash_algorithm_error(algorithm: object) -> str | None:
    if (
        not isinstance(algorithm, str)
        or algorithm.lower() in _UNSUPPORTED_ALGORITHMS
        or algorithm.lower() not in hashlib.algorithms_available
    ):
        return (
            f"hash_algorithm {algorithm!r} is not a fixed-length hashlib algorithm "
            f"available here (for example 'sha256', 'sha1', 'blake2b')."
        )
    return None


def hash_length_error(length: object, algorithm: str) -> str | None:
    if hash_algorithm_error(algorithm) is not None:
        return None
    maximum = hashlib.new(algorithm.lower()).digest_size * 2
    if (
        isinstance(length, bool)
        or not isinstance(length, int)
        or not MIN_HASH_LENGTH <= length <= maximum
    ):
        return (
            f"hash_length must be an integer from {MIN_HASH_LENGTH} to {maximum} "
            f"for {algorithm}, not {length!r}."
        )
    return None


def query_param_error(param: object) -> str | None:
    if not isinstance(param, str) or not param.isidentifier():
        return f"query_param must be a simple name like 'v', not {param!r}."
    return None


def key_prefix_error(prefix: object) -> str | None:
    if (
        not isinstance(prefix, str)
        or not prefix
        or len(prefix) > 100
        or any(ord(char) <= 32 or ord(char) == 127 for char in prefix)
    ):
        return (
            f"key_prefix must be a non-empty string of at most 100 characters "
            f"without spaces or control characters, not {prefix!r}."
        )
    return None
