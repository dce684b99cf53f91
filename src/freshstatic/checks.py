"""
System checks (``manage.py check``), registered by the app's ``ready()``.

Every ID is documented in docs/checks.md.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any, cast

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.cache.backends.dummy import DummyCache
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from freshstatic import compress
from freshstatic.cache import PER_PROCESS_BACKENDS
from freshstatic.conf import (
    APP_MISSING_ERROR,
    APP_MISSING_HINT,
    MIDDLEWARE_PATH,
    STORAGE_DEFAULTS,
    conf,
    did_you_mean,
    hash_algorithm_error,
    hash_length_error,
    key_prefix_error,
    middleware_serves,
    query_param_error,
    setting_errors,
    strict_error,
    version_in_error,
)

STORAGE_SETTING = "STORAGES['staticfiles']"
OPTIONS_HINT = "See the storage options in docs/configuration.md."

# How a storage refuses an option it does not take: Python's TypeError for an
# unexpected keyword argument, or django-storages' "Invalid setting 'name'".
_UNKNOWN_OPTION = re.compile(
    r"(?:unexpected keyword argument|invalid setting) '([^']+)'", re.IGNORECASE
)


def _staticfiles_backend() -> tuple[type | None, dict[str, Any]]:
    # settings.STORAGES, not storages.backends: under Django 4.2 the latter
    # loses OPTIONS when STORAGES is overridden in tests.
    config = cast(dict[str, Any], settings.STORAGES.get("staticfiles") or {})
    try:
        backend = import_string(config.get("BACKEND", ""))
    except ImportError:
        # Django reports an unimportable backend itself.
        return None, {}
    return backend if isinstance(backend, type) else None, dict(
        config.get("OPTIONS") or {}
    )


def check_storage(
    *,
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    from freshstatic.storage import FreshStaticMixin

    messages: list[CheckMessage] = []
    backend, options = _staticfiles_backend()
    installed = apps.is_installed("freshstatic")
    if backend is None or not issubclass(backend, FreshStaticMixin):
        if installed and backend is not None:
            messages.append(
                Warning(
                    f"'freshstatic' is installed but {STORAGE_SETTING} uses "
                    f"{_dotted(backend)}, so static URLs carry no content hash.",
                    hint="Set STORAGES['staticfiles']['BACKEND'] to "
                    "'freshstatic.storage.FreshStaticFilesStorage' (or mix "
                    "freshstatic.storage.FreshStaticMixin into your storage).",
                    id="freshstatic.W002",
                )
            )
        return messages
    if not installed:
        # Only reachable when the app was removed after start-up (a test's
        # override_settings): without the app these checks are never
        # registered, and the storage itself refuses to be created.
        messages.append(
            Error(APP_MISSING_ERROR, hint=APP_MISSING_HINT, id="freshstatic.E001")
        )
    merged = {**STORAGE_DEFAULTS, **options}
    messages.extend(_cache_messages(merged["cache_alias"]))
    for check_id, error in (
        ("freshstatic.E003", hash_algorithm_error(merged["hash_algorithm"])),
        (
            "freshstatic.E004",
            hash_length_error(merged["hash_length"], merged["hash_algorithm"]),
        ),
        ("freshstatic.E005", key_prefix_error(merged["key_prefix"])),
        ("freshstatic.E005", query_param_error(merged["query_param"])),
        ("freshstatic.E005", strict_error(merged["strict"])),
        ("freshstatic.E005", version_in_error(merged["version_in"])),
    ):
        if error:
            messages.append(
                Error(
                    f"{STORAGE_SETTING}['OPTIONS']: {error}",
                    hint=OPTIONS_HINT,
                    id=check_id,
                )
            )
    if installed:
        messages.extend(_creation_messages(backend, options))
    messages.extend(_serving_messages())
    messages.extend(_live_messages())
    messages.extend(_versions_messages())
    messages.extend(
        Error(
            error,
            hint="See the FRESHSTATIC settings in docs/configuration.md.",
            id="freshstatic.E006",
        )
        for error in setting_errors()
    )
    return messages


def _cache_messages(alias: object) -> list[CheckMessage]:
    cache_config = settings.CACHES.get(alias) if isinstance(alias, str) else None
    if cache_config is None:
        return [
            Error(
                f"The cache alias {alias!r} ({STORAGE_SETTING}['OPTIONS']"
                "['cache_alias']) is not defined in CACHES.",
                hint=f"Add {alias!r} to CACHES or choose one of: "
                + ", ".join(repr(name) for name in settings.CACHES),
                id="freshstatic.E002",
            )
        ]
    messages: list[CheckMessage] = []
    try:
        cache_backend = import_string(cache_config.get("BACKEND", ""))
    except ImportError:
        cache_backend = None
    per_process = isinstance(cache_backend, type) and issubclass(
        cache_backend, PER_PROCESS_BACKENDS
    )
    if per_process and not setting_errors() and conf.WATCH is False:
        messages.append(
            Warning(
                f"The cache alias {alias!r} is per-process and "
                "FRESHSTATIC['WATCH'] is False: no watcher in this process "
                "invalidates its hashes, so edited files keep their old URL.",
                hint="Set FRESHSTATIC['WATCH'] to 'auto' or True, or share "
                "hashes through Redis and run 'manage.py watchstatic'.",
                id="freshstatic.W003",
            )
        )
    if isinstance(cache_backend, type) and issubclass(cache_backend, DummyCache):
        messages.append(
            Warning(
                f"The cache alias {alias!r} uses DummyCache: hashes are never "
                "stored, so every process re-hashes files and no invalidation "
                "is shared.",
                hint="Use LocMemCache for one process, or Redis "
                "(django-redis) to share hashes between processes.",
                id="freshstatic.W001",
            )
        )
    return messages


def _creation_messages(backend: type, options: dict[str, Any]) -> list[CheckMessage]:
    """
    Create the storage with its OPTIONS, as Django will at the first page, to
    report the options it refuses (a typo, an option of no class in it) and
    anything else that makes its creation fail. The options that freshstatic
    itself takes are left out: E003-E005 report their values.
    """
    others = {
        key: value for key, value in options.items() if key not in STORAGE_DEFAULTS
    }
    messages: list[CheckMessage] = []
    while True:
        try:
            backend(**others)
        except Exception as exc:
            match = _UNKNOWN_OPTION.search(str(exc))
            unknown = match.group(1) if match else None
            if unknown is None or unknown not in others:
                messages.append(
                    Error(
                        f"{STORAGE_SETTING} cannot be created with its OPTIONS: "
                        f"{type(exc).__name__}: {exc}",
                        hint=OPTIONS_HINT,
                        id="freshstatic.E007",
                    )
                )
                return messages
            suggestion = did_you_mean(unknown, _option_names(backend))
            messages.append(
                Error(
                    f"{STORAGE_SETTING}['OPTIONS'] has {unknown!r}, which "
                    f"{_dotted(backend)} does not accept.",
                    hint=(f"Did you mean {suggestion!r}? " if suggestion else "")
                    + OPTIONS_HINT,
                    id="freshstatic.E007",
                )
            )
            # Again without it, to report every unknown option at once.
            del others[unknown]
        else:
            return messages


def _option_names(backend: type) -> set[str]:
    """The keyword arguments that the storage's classes name."""
    names = set(STORAGE_DEFAULTS)
    for klass in backend.__mro__:
        init = klass.__dict__.get("__init__")
        if not callable(init):
            continue  # inherits its __init__
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):  # pragma: no cover - some C types
            continue  # only a suggestion is lost; a check never crashes
        names.update(
            parameter.name
            for parameter in parameters
            if parameter.kind
            in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and parameter.name != "self"
        )
    return names


def _dotted(klass: type) -> str:
    return f"{klass.__module__}.{klass.__qualname__}"


SECURITY_MIDDLEWARE = "django.middleware.security.SecurityMiddleware"


def _order_messages() -> list[CheckMessage]:
    middleware = list(settings.MIDDLEWARE or ())
    if (
        MIDDLEWARE_PATH not in middleware
        or SECURITY_MIDDLEWARE not in middleware
        or middleware.index(SECURITY_MIDDLEWARE) < middleware.index(MIDDLEWARE_PATH)
    ):
        return []
    return [
        Warning(
            "FreshStaticMiddleware comes before SecurityMiddleware in MIDDLEWARE, "
            "so static responses go out without the headers SecurityMiddleware "
            "adds to pages (X-Content-Type-Options: nosniff, Referrer-Policy, "
            "Cross-Origin-Opener-Policy, HSTS).",
            hint="Put 'freshstatic.middleware.FreshStaticMiddleware' directly "
            "after 'django.middleware.security.SecurityMiddleware'.",
            id="freshstatic.W007",
        )
    ]


def _compression_messages() -> list[CheckMessage]:
    missing = [
        coding for coding in conf.COMPRESSION if compress.compressor(coding) is None
    ]
    return [
        Warning(
            f"FRESHSTATIC['COMPRESSION'] names {coding!r}, but "
            f"{compress.PACKAGES[coding]} is not installed: responses are never "
            f"sent with {coding}.",
            hint="pip install 'django-freshstatic[compression]', or leave "
            f"{coding!r} out of FRESHSTATIC['COMPRESSION'].",
            id="freshstatic.W008",
        )
        for coding in missing
    ]


def _serving_messages() -> list[CheckMessage]:
    if setting_errors():
        return []
    messages = _order_messages()
    if not middleware_serves():
        return messages
    messages.extend(_compression_messages())
    names = [config.name for config in apps.get_app_configs()]
    if (
        "freshstatic" not in names
        or "django.contrib.staticfiles" not in names
        or names.index("freshstatic") < names.index("django.contrib.staticfiles")
    ):
        return messages
    return [
        *messages,
        Warning(
            "FreshStaticMiddleware serves static files, but 'freshstatic' comes "
            "after 'django.contrib.staticfiles' in INSTALLED_APPS, so under "
            "runserver with DEBUG=True Django's own static handler answers "
            "first: stylesheets are served without their rewritten references.",
            hint="Put 'freshstatic' above 'django.contrib.staticfiles' in "
            "INSTALLED_APPS.",
            id="freshstatic.W005",
        ),
    ]


def _live_messages() -> list[CheckMessage]:
    if setting_errors() or conf.LIVE is not True or settings.DEBUG:
        return []
    return [
        Warning(
            "FRESHSTATIC['LIVE'] is True while DEBUG is False: every HTML page "
            "gets the live page's script, and the server keeps an event stream "
            "open for each page.",
            hint="The live page is for development: leave FRESHSTATIC['LIVE'] "
            "at 'auto' (on when DEBUG is) or set it to False in production.",
            id="freshstatic.W009",
        )
    ]


def _versions_messages() -> list[CheckMessage]:
    """The version store: a folder that cannot be written, or no size bound."""
    import shutil

    from freshstatic.versions import configured_store

    if setting_errors():
        return []
    store = configured_store()
    if store is None:
        return []
    problem = store.check_writable()
    if problem is not None:
        return [
            Error(
                f"The version store FRESHSTATIC['VERSIONS'] ({store.path!r}) cannot "
                f"be written ({problem}): old versions are not kept and updates "
                "are not sent as deltas.",
                hint="Point 'PATH' at a folder the server processes can create "
                "and write, or remove FRESHSTATIC['VERSIONS'].",
                id="freshstatic.E008",
            )
        ]
    if store.max_bytes is None:
        return [
            Warning(
                f"The version store FRESHSTATIC['VERSIONS'] ({store.path!r}) has no "
                "size bound (MAX_BYTES is None): it grows with every version "
                "served until the disk is full.",
                hint="Set 'MAX_BYTES' (default 512 MiB).",
                id="freshstatic.W010",
            )
        ]
    free = shutil.disk_usage(store.path).free + store.usage().bytes
    if store.max_bytes > free:
        return [
            Warning(
                f"The version store FRESHSTATIC['VERSIONS'] ({store.path!r}) may "
                f"take {store.max_bytes} bytes (MAX_BYTES), more than its disk "
                f"has free ({free} bytes): it can fill the disk before its bound "
                "stops it.",
                hint="Lower 'MAX_BYTES', or move 'PATH' to a larger disk.",
                id="freshstatic.W010",
            )
        ]
    return []


def watchstatic_messages(alias: str, shared: bool) -> list[CheckMessage]:
    """What ``manage.py watchstatic`` reports before it starts."""
    if shared:
        return []
    return [
        Warning(
            f"The cache alias {alias!r} is per-process, so 'watchstatic' can only "
            "invalidate hashes in its own process, not in your servers.",
            hint="Share hashes through Redis (django-redis), or let each server "
            "process run its own watcher (FRESHSTATIC['WATCH'] = True).",
            id="freshstatic.W004",
        )
    ]


def hashstatic_messages(
    alias: str, shared: bool, *, rotate: bool, warm: bool
) -> list[CheckMessage]:
    """What ``manage.py hashstatic`` reports before it rotates or warms up."""
    if shared or not (rotate or warm):
        return []
    if rotate and warm:
        effect = (
            "'hashstatic --rotate --all' invalidates and warms up hashes in its "
            "own process only"
        )
    elif rotate:
        effect = "'hashstatic --rotate' invalidates hashes in its own process only"
    else:
        effect = "the hashes 'hashstatic --all' computes stay in its own process"
    return [
        Warning(
            f"The cache alias {alias!r} is per-process, so {effect}: your "
            "servers are not affected.",
            hint="Share hashes through Redis (django-redis). With a per-process "
            "cache each server keeps its own hashes, kept fresh by its own "
            "watcher (FRESHSTATIC['WATCH']) or a restart.",
            id="freshstatic.W006",
        )
    ]
