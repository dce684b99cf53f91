"""System checks (``manage.py check``): every ID is listed in the README."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.cache.backends.dummy import DummyCache
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from freshstatic.cache import PER_PROCESS_BACKENDS
from freshstatic.conf import (
    STORAGE_DEFAULTS,
    conf,
    hash_algorithm_error,
    hash_length_error,
    key_prefix_error,
    middleware_serves,
    query_param_error,
    setting_errors,
)

STORAGE_SETTING = "STORAGES['staticfiles']"


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
                    f"{backend.__module__}.{backend.__qualname__}, so static URLs "
                    "carry no content hash.",
                    hint="Set STORAGES['staticfiles']['BACKEND'] to "
                    "'freshstatic.storage.FreshStaticFilesStorage' (or mix "
                    "freshstatic.storage.FreshStaticMixin into your storage).",
                    id="freshstatic.W002",
                )
            )
        return messages
    if not installed:
        messages.append(
            Error(
                f"{STORAGE_SETTING} uses a freshstatic storage but 'freshstatic' "
                "is not in INSTALLED_APPS.",
                hint="Add 'freshstatic' to INSTALLED_APPS, or no watcher starts "
                "and changed files keep their old hash.",
                id="freshstatic.E001",
            )
        )
    options = {**STORAGE_DEFAULTS, **options}
    alias = options["cache_alias"]
    cache_config = settings.CACHES.get(alias)
    if cache_config is None:
        messages.append(
            Error(
                f"The cache alias {alias!r} ({STORAGE_SETTING}['OPTIONS']"
                "['cache_alias']) is not defined in CACHES.",
                hint=f"Add {alias!r} to CACHES or choose one of: "
                + ", ".join(repr(name) for name in settings.CACHES),
                id="freshstatic.E002",
            )
        )
    else:
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
    for check_id, error in (
        ("freshstatic.E003", hash_algorithm_error(options["hash_algorithm"])),
        (
            "freshstatic.E004",
            hash_length_error(options["hash_length"], options["hash_algorithm"]),
        ),
        ("freshstatic.E005", key_prefix_error(options["key_prefix"])),
        ("freshstatic.E005", query_param_error(options["query_param"])),
    ):
        if error:
            messages.append(
                Error(
                    f"{STORAGE_SETTING}['OPTIONS']: {error}",
                    hint="See the storage options in docs/configuration.md.",
                    id=check_id,
                )
            )
    messages.extend(_serving_messages())
    messages.extend(
        Error(
            error,
            hint="See the FRESHSTATIC settings in docs/configuration.md.",
            id="freshstatic.E006",
        )
        for error in setting_errors()
    )
    return messages


def _serving_messages() -> list[CheckMessage]:
    if setting_errors() or not middleware_serves():
        return []
    names = [config.name for config in apps.get_app_configs()]
    if (
        "freshstatic" not in names
        or "django.contrib.staticfiles" not in names
        or names.index("freshstatic") < names.index("django.contrib.staticfiles")
    ):
        return []
    return [
        Warning(
            "FreshStaticMiddleware serves static files, but 'freshstatic' comes "
            "after 'django.contrib.staticfiles' in INSTALLED_APPS, so under "
            "runserver with DEBUG=True Django's own static handler answers "
            "first: stylesheets are served without their rewritten references.",
            hint="Put 'freshstatic' above 'django.contrib.staticfiles' in "
            "INSTALLED_APPS.",
            id="freshstatic.W005",
        )
    ]


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
