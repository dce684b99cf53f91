from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.checks import Tags, register
from django.core.signals import setting_changed


class FreshStaticConfig(AppConfig):
    name = "freshstatic"
    verbose_name = "django-freshstatic"

    def ready(self) -> None:
        from freshstatic.checks import check_storage

        register(check_storage, Tags.staticfiles)
        setting_changed.connect(_setting_changed, dispatch_uid="freshstatic-settings")

        from freshstatic import watcher

        if watcher.should_autostart():
            watcher.start()


# Settings that change which file a name resolves to: old hashes are wrong.
_FILE_SETTINGS = frozenset(
    {
        "FRESHSTATIC",
        "INSTALLED_APPS",
        "MIDDLEWARE",
        "STATIC_ROOT",
        "STATICFILES_DIRS",
        "STATICFILES_FINDERS",
        "STATICFILES_STORAGE",
        "STORAGES",
    }
)
# Settings that change how URLs are built or cached: old memos are wrong.
_URL_SETTINGS = frozenset({"CACHES", "STATIC_URL"})


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    from freshstatic import cache

    if setting in _FILE_SETTINGS:
        cache.rotate_all()
    elif setting in _URL_SETTINGS:
        cache.expire_all()
