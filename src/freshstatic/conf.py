"""
Process-wide settings, read from ``settings.FRESHSTATIC`` on every access.

Nothing here is read at import time, so ``override_settings(FRESHSTATIC=...)``
takes effect immediately. Options that belong to one storage (hash algorithm,
length, cache alias...) are keyword arguments of the storage instead, in
``STORAGES["staticfiles"]["OPTIONS"]``.

Each setting is read by one function that returns both the value used at run
time and, for an invalid value, what is wrong with it: the properties of
``conf`` use the first, the freshstatic.E006 check reports the second, so the
two can never disagree.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

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
    # Bare module specifiers for {% importmap %}: {"lit": "vendor/lit.js"}
    # (static names; a key ending in "/" maps every module under a folder).
    "IMPORTMAP": {},
    # integrity="sha256-..." in the tags: "auto" (when DEBUG is off), True or
    # False.
    "INTEGRITY": "auto",
    # Modules served with each relative import carrying its target's ?v=, for
    # pages without {% importmap %}; False serves modules as they are.
    "REWRITE_IMPORTS": False,
    # Content codings the middleware may send, preferred first; False: none.
    "COMPRESSION": ["br", "zstd", "gzip"],
    # Level of each coding (each version is compressed once).
    "COMPRESSION_LEVELS": {},
    # The live page: open pages follow static edits (stylesheets and images
    # swapped in place). "auto" (on when DEBUG), True or False.
    "LIVE": "auto",
    # The version store: a folder keeping the bytes of every version served,
    # so that old URLs keep working and updates travel as deltas. None: off.
    "VERSIONS": None,
}

# The accepted range of each setting in seconds. A number outside it is
# reported by freshstatic.E006 and clamped to it at run time: polling every
# 0.5 ms burns a core while idle, every 10**9 s never notices a change.
DEBOUNCE_SECONDS_RANGE = (0.0, 5.0)
POLL_SECONDS_RANGE = (0.05, 60.0)
GENERATION_TTL_SECONDS_RANGE = (0.0, 300.0)
# POLL = True
POLL_DEFAULT_SECONDS = 1.0
# The version store's bounds (FRESHSTATIC["VERSIONS"]): what it keeps when
# they are left out, and the accepted range of each (clamped to it).
VERSIONS_MAX_BYTES_DEFAULT = 512 * 1024 * 1024
VERSIONS_MAX_BYTES_RANGE = (1024 * 1024, 1024**4)
VERSIONS_MAX_AGE_DEFAULT_SECONDS = 90 * 24 * 60 * 60.0
VERSIONS_MAX_AGE_SECONDS_RANGE = (60.0, 10 * 365 * 24 * 60 * 60.0)
VERSIONS_KEYS = ("PATH", "MAX_BYTES", "MAX_AGE", "ENABLED", "DELTAS")

# How a boolean is written in settings, including ones read from environment
# variables ("false" must not be truthy). Compared case-insensitively.
BOOLEAN_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}

# Storage options (STORAGES["staticfiles"]["OPTIONS"]) and their defaults.
STORAGE_DEFAULTS: dict[str, Any] = {
    "hash_algorithm": "sha256",
    "hash_length": 12,
    "query_param": "v",
    "cache_alias": "default",
    "key_prefix": "freshstatic",
    "strict": None,
    "version_in": "query",
}

# Variable-length digests need an explicit size; they make poor cache busters.
_UNSUPPORTED_ALGORITHMS = frozenset({"shake_128", "shake_256"})
MIN_HASH_LENGTH = 6
# The longest fixed-length hashlib digest (SHA-512, BLAKE2b), in hex digits.
MAX_HASH_LENGTH = 128

# A freshstatic storage created while the app is not installed (check
# freshstatic.E001, and the storage's own ImproperlyConfigured).
APP_MISSING_ERROR = (
    "A freshstatic storage is used but 'freshstatic' is not in INSTALLED_APPS: "
    "no watcher starts and its system checks never run, so edited files would "
    "keep their old URL."
)
APP_MISSING_HINT = (
    "Add 'freshstatic' to INSTALLED_APPS, above 'django.contrib.staticfiles'."
)


def parse_bool(value: object) -> bool | None:
    """
    ``value`` as a boolean, or None if it is not written as one: True or
    False, 1 or 0, or a string from BOOLEAN_WORDS in any case.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return BOOLEAN_WORDS.get(value.strip().lower())
    return None


def parse_seconds(value: object) -> float | None:
    """``value`` as a number of seconds (a number, or a string such as
    "0.5"), or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return None if math.isnan(seconds) else seconds


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelt ``name``, if one is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return matches[0] if matches else None


# A setting's value at run time, and what is wrong with it (None if nothing).
Reading = tuple[Any, str | None]


def _read_watch(value: object) -> Reading:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto", None
    flag = parse_bool(value)
    if flag is not None:
        return flag, None
    return "auto", f"must be 'auto', True or False, not {value!r}; 'auto' is used."


def _boolean(key: str) -> Callable[[object], Reading]:
    def read(value: object) -> Reading:
        flag = parse_bool(value)
        if flag is not None:
            return flag, None
        return DEFAULTS[key], (
            f"must be True or False (or 'true', 'false', 'yes', 'no', 'on', "
            f"'off', '1', '0'), not {value!r}; {DEFAULTS[key]} is used."
        )

    return read


def _clamp(
    value: object, seconds: float, bounds: tuple[float, float], expected: str
) -> Reading:
    low, high = bounds
    if low <= seconds <= high:
        return seconds, None
    clamped = min(max(seconds, low), high)
    return clamped, f"must be {expected}, not {value!r}; {clamped:g} is used."


def _seconds(key: str, bounds: tuple[float, float]) -> Callable[[object], Reading]:
    expected = f"a number of seconds from {bounds[0]:g} to {bounds[1]:g}"

    def read(value: object) -> Reading:
        seconds = parse_seconds(value)
        if seconds is None:
            default = float(DEFAULTS[key])
            return default, f"must be {expected}, not {value!r}; {default:g} is used."
        return _clamp(value, seconds, bounds, expected)

    return read


def _read_poll(value: object) -> Reading:
    """The polling interval in seconds, or None for native file events."""
    flag = parse_bool(value)
    if flag is not None:
        return (POLL_DEFAULT_SECONDS if flag else None), None
    low, high = POLL_SECONDS_RANGE
    expected = f"True, False or a number of seconds from {low:g} to {high:g}"
    seconds = parse_seconds(value)
    if seconds is None or seconds <= 0:
        # No interval at all, like 0 (False): native events.
        return None, f"must be {expected}, not {value!r}; native events are used."
    return _clamp(value, seconds, POLL_SECONDS_RANGE, expected)


def _read_importmap(value: object) -> Reading:
    """Bare module specifiers and the static names (or URLs) they map to."""
    from freshstatic.locations import clean_name
    from freshstatic.modules import is_bare, is_url

    if not isinstance(value, dict):
        return {}, (
            f"must be a dict of bare module specifiers to static names, "
            f"not {value!r}; none are mapped."
        )
    entries: dict[str, str] = {}
    problems = []
    for specifier, target in value.items():
        if not isinstance(specifier, str) or not specifier or not is_bare(specifier):
            problems.append(f"{specifier!r} is not a bare module specifier")
        elif not isinstance(target, str) or not target:
            problems.append(f"{specifier!r} maps to {target!r}, not a static name")
        elif specifier.endswith("/") != target.endswith("/"):
            problems.append(
                f"{specifier!r} and {target!r} must both end in '/' (a folder) "
                f"or neither"
            )
        elif not is_url(target) and clean_name(target.rstrip("/")) is None:
            problems.append(
                f"{specifier!r} maps to {target!r}, which is not a static name "
                f"(such as 'vendor/lit.js') or a URL"
            )
        else:
            entries[specifier] = target
    if problems:
        return entries, "; ".join(problems) + " (left out)."
    return entries, None


def _read_integrity(value: object) -> Reading:
    # The same words as WATCH: "auto", True or False.
    return _read_watch(value)


def _read_compression(value: object) -> Reading:
    from freshstatic.compress import CODINGS

    if parse_bool(value) is False:
        return (), None
    if parse_bool(value) is True:
        return tuple(CODINGS), None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)) and all(
        isinstance(coding, str) and coding in CODINGS for coding in value
    ):
        return tuple(dict.fromkeys(value)), None
    return tuple(DEFAULTS["COMPRESSION"]), (
        f"must be False or a list of content codings among {list(CODINGS)}, "
        f"not {value!r}; {DEFAULTS['COMPRESSION']} is used."
    )


def _read_levels(value: object) -> Reading:
    from freshstatic.compress import DEFAULT_LEVELS, LEVEL_RANGES

    levels = dict(DEFAULT_LEVELS)
    if not isinstance(value, dict):
        return levels, f"must be a dict of coding to level, not {value!r}."
    problems = []
    for coding, level in value.items():
        bounds = LEVEL_RANGES.get(coding)
        if bounds is None:
            problems.append(f"{coding!r} is not a coding among {list(LEVEL_RANGES)}")
        elif (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not bounds[0] <= level <= bounds[1]
        ):
            problems.append(
                f"{coding!r} needs a level from {bounds[0]} to {bounds[1]}, "
                f"not {level!r}"
            )
        else:
            levels[coding] = level
    if problems:
        return levels, "; ".join(problems) + " (the default levels are used there)."
    return levels, None


def _read_live(value: object) -> Reading:
    # The same words as WATCH: "auto", True or False.
    return _read_watch(value)


@dataclass(frozen=True)
class VersionsSetting:
    """``FRESHSTATIC["VERSIONS"]``, read."""

    path: str
    # None: no bound of that kind (check freshstatic.W010 warns of no size bound).
    max_bytes: int | None = VERSIONS_MAX_BYTES_DEFAULT
    max_age_seconds: float | None = VERSIONS_MAX_AGE_DEFAULT_SECONDS
    # "auto": when DEBUG is off.
    enabled: bool | Literal["auto"] = "auto"
    # "auto": when STATIC_URL has no host (a CDN may not vary its cache on
    # Available-Dictionary).
    deltas: bool | Literal["auto"] = "auto"


def _read_versions_path(value: object) -> tuple[str | None, str | None]:
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path and os.path.isabs(path) and "\0" not in path:
            return os.path.normpath(path), None
    return None, f"needs an absolute folder path, not {value!r}; the store is off"


def _read_versions_bound(
    key: str, value: object, default: float, bounds: tuple[float, float], unit: str
) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    amount = parse_seconds(value)  # any number, or a string of one
    low, high = bounds
    expected = f"None or a number of {unit} from {low:.0f} to {high:.0f}"
    if amount is None:
        return (
            default,
            f"[{key!r}] must be {expected}, not {value!r}; {default:.0f} is used",
        )
    if low <= amount <= high:
        return amount, None
    clamped = min(max(amount, low), high)
    return (
        clamped,
        f"[{key!r}] must be {expected}, not {value!r}; {clamped:.0f} is used",
    )


# The last reading of VERSIONS, and a copy of the value it was read from: it
# is read on every static request, and reading it anew costs tens of µs.
_versions_read: tuple[object, Reading] | None = None


def _read_versions(value: object) -> Reading:
    """The version store's folder and bounds, or None when it is off."""
    global _versions_read
    if value is None or value is False:
        return None, None
    last = _versions_read
    if last is not None and type(last[0]) is type(value) and last[0] == value:
        return last[1]
    reading = _read_versions_anew(value)
    _versions_read = (dict(value) if isinstance(value, dict) else value, reading)
    return reading


def _read_versions_anew(value: object) -> Reading:
    if not isinstance(value, dict):
        path, problem = _read_versions_path(value)
        return (None if path is None else VersionsSetting(path)), problem
    problems = []
    for key in value:
        if key not in VERSIONS_KEYS:
            match = did_you_mean(str(key), VERSIONS_KEYS)
            suggestion = f" (did you mean {match!r}?)" if match else ""
            problems.append(f"has an unknown key {key!r}{suggestion}")
    path, problem = _read_versions_path(value.get("PATH"))
    if problem is not None:
        problems.append(f"['PATH'] {problem}")
    max_bytes, problem = _read_versions_bound(
        "MAX_BYTES",
        value.get("MAX_BYTES", VERSIONS_MAX_BYTES_DEFAULT),
        VERSIONS_MAX_BYTES_DEFAULT,
        VERSIONS_MAX_BYTES_RANGE,
        "bytes",
    )
    if problem is not None:
        problems.append(problem)
    max_age, problem = _read_versions_bound(
        "MAX_AGE",
        value.get("MAX_AGE", VERSIONS_MAX_AGE_DEFAULT_SECONDS),
        VERSIONS_MAX_AGE_DEFAULT_SECONDS,
        VERSIONS_MAX_AGE_SECONDS_RANGE,
        "seconds",
    )
    if problem is not None:
        problems.append(problem)
    switches: dict[str, bool | Literal["auto"]] = {}
    for key in ("ENABLED", "DELTAS"):
        switch, problem = _read_watch(value.get(key, "auto"))
        switches[key] = switch
        if problem is not None:
            problems.append(f"[{key!r}] {problem}")
    setting = None
    if path is not None:
        setting = VersionsSetting(
            path,
            None if max_bytes is None else int(max_bytes),
            max_age,
            switches["ENABLED"],
            switches["DELTAS"],
        )
    return setting, ("; ".join(problems) + ".") if problems else None


_READERS: dict[str, Callable[[object], Reading]] = {
    "WATCH": _read_watch,
    "DEBOUNCE": _seconds("DEBOUNCE", DEBOUNCE_SECONDS_RANGE),
    "POLL": _read_poll,
    "GENERATION_TTL": _seconds("GENERATION_TTL", GENERATION_TTL_SECONDS_RANGE),
    "STRICT": _boolean("STRICT"),
    "SERVE": _boolean("SERVE"),
    "IMPORTMAP": _read_importmap,
    "INTEGRITY": _read_integrity,
    "REWRITE_IMPORTS": _boolean("REWRITE_IMPORTS"),
    "COMPRESSION": _read_compression,
    "COMPRESSION_LEVELS": _read_levels,
    "LIVE": _read_live,
    "VERSIONS": _read_versions,
}


def read_setting(key: str) -> Reading:
    """The run-time value of ``FRESHSTATIC[key]``, and what is wrong with it."""
    user = getattr(settings, "FRESHSTATIC", None)
    value = user.get(key, DEFAULTS[key]) if isinstance(user, dict) else DEFAULTS[key]
    return _READERS[key](value)


class Settings:
    """Typed, call-time view of ``settings.FRESHSTATIC`` merged over DEFAULTS."""

    # An invalid value (reported by the freshstatic.E006 check) falls back to
    # the default, and a number out of range is clamped, so that a typo never
    # takes pages down.

    @property
    def WATCH(self) -> bool | Literal["auto"]:
        return cast("bool | Literal['auto']", read_setting("WATCH")[0])

    @property
    def DEBOUNCE(self) -> float:
        return cast(float, read_setting("DEBOUNCE")[0])

    @property
    def POLL(self) -> float | None:
        """The polling interval in seconds, or None to use native events."""
        return cast("float | None", read_setting("POLL")[0])

    @property
    def GENERATION_TTL(self) -> float:
        return cast(float, read_setting("GENERATION_TTL")[0])

    @property
    def STRICT(self) -> bool:
        return cast(bool, read_setting("STRICT")[0])

    @property
    def SERVE(self) -> bool:
        return cast(bool, read_setting("SERVE")[0])

    @property
    def IMPORTMAP(self) -> dict[str, str]:
        """Bare module specifiers -> static names (or URLs)."""
        return cast("dict[str, str]", read_setting("IMPORTMAP")[0])

    @property
    def INTEGRITY(self) -> bool | Literal["auto"]:
        return cast("bool | Literal['auto']", read_setting("INTEGRITY")[0])

    @property
    def REWRITE_IMPORTS(self) -> bool:
        """Whether modules are served with their relative imports versioned."""
        return cast(bool, read_setting("REWRITE_IMPORTS")[0])

    @property
    def COMPRESSION(self) -> tuple[str, ...]:
        """The content codings to offer, preferred first."""
        return cast("tuple[str, ...]", read_setting("COMPRESSION")[0])

    @property
    def COMPRESSION_LEVELS(self) -> dict[str, int]:
        return cast("dict[str, int]", read_setting("COMPRESSION_LEVELS")[0])

    @property
    def LIVE(self) -> bool | Literal["auto"]:
        """Whether pages follow static edits; "auto": when DEBUG is on."""
        return cast("bool | Literal['auto']", read_setting("LIVE")[0])

    @property
    def VERSIONS(self) -> VersionsSetting | None:
        """The version store's folder and bounds, or None when it is off."""
        return cast("VersionsSetting | None", read_setting("VERSIONS")[0])


conf = Settings()


MIDDLEWARE_PATH = "freshstatic.middleware.FreshStaticMiddleware"


def middleware_serves() -> bool:
    """Whether FreshStaticMiddleware is installed and serves static files."""
    return conf.SERVE and MIDDLEWARE_PATH in (settings.MIDDLEWARE or ())


def integrity_enabled() -> bool:
    """
    Whether tags carry ``integrity``: ``FRESHSTATIC["INTEGRITY"]``, where
    "auto" means when DEBUG is off (in development a file may change under
    an open page, and a stale integrity would block it).
    """
    integrity = conf.INTEGRITY
    return not settings.DEBUG if integrity == "auto" else bool(integrity)


def setting_errors() -> list[str]:
    """Describe every invalid key or value in ``settings.FRESHSTATIC``."""
    user = getattr(settings, "FRESHSTATIC", None)
    if user is None:
        return []
    if not isinstance(user, dict):
        return [f"FRESHSTATIC must be a dict, not {type(user).__name__}."]
    errors = []
    for key in sorted(user, key=str):
        if key not in _READERS:
            match = did_you_mean(str(key), DEFAULTS)
            suggestion = f" (did you mean {match!r}?)" if match else ""
            errors.append(f"FRESHSTATIC has an unknown key {key!r}{suggestion}.")
            continue
        problem = _READERS[key](user[key])[1]
        if problem is not None:
            errors.append(f"FRESHSTATIC[{key!r}] {problem}")
    return errors


def _digest_hex_length(algorithm: object) -> int | None:
    """Hex digits in a digest of ``algorithm``, or None if it is unusable."""
    if (
        not isinstance(algorithm, str)
        or algorithm.lower() in _UNSUPPORTED_ALGORITHMS
        or algorithm.lower() not in hashlib.algorithms_available
    ):
        return None
    return hashlib.new(algorithm.lower()).digest_size * 2


def hash_algorithm_error(algorithm: object) -> str | None:
    if _digest_hex_length(algorithm) is None:
        return (
            f"hash_algorithm {algorithm!r} is not a fixed-length hashlib algorithm "
            f"available here (for example 'sha256', 'sha1', 'blake2b')."
        )
    return None


def hash_length_error(length: object, algorithm: object) -> str | None:
    # Checked against the algorithm's digest when it is valid, and against
    # the longest digest otherwise, so both mistakes are reported at once.
    maximum = _digest_hex_length(algorithm)
    for_algorithm = f" for {algorithm}" if maximum is not None else ""
    maximum = maximum or MAX_HASH_LENGTH
    if (
        isinstance(length, bool)
        or not isinstance(length, int)
        or not MIN_HASH_LENGTH <= length <= maximum
    ):
        return (
            f"hash_length must be an integer from {MIN_HASH_LENGTH} to {maximum}"
            f"{for_algorithm}, not {length!r}."
        )
    return None


def query_param_error(param: object) -> str | None:
    if not isinstance(param, str) or not param.isidentifier():
        return f"query_param must be a simple name like 'v', not {param!r}."
    return None


VERSION_IN_CHOICES = ("query", "filename")


def version_in_error(version_in: object) -> str | None:
    if version_in not in VERSION_IN_CHOICES:
        return (
            f"version_in must be 'query' (?v=<hash>) or 'filename' "
            f"(site.<hash>.css), not {version_in!r}."
        )
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


def strict_error(strict: object) -> str | None:
    if strict is not None and parse_bool(strict) is None:
        return f"strict must be None, True or False, not {strict!r}."
    return None
