"""
django-freshstatic: live content-hash cache busting for Django static files.

Only the few public names live here, and nothing heavy is imported until used.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["invalidate"]


def invalidate(names: Iterable[str] | None = None) -> bool:
    """
    Invalidate every cached static hash, in every process sharing the cache.

    ``names`` (the static names that changed, if known) is passed on to the
    ``static_changed`` signal; the invalidation itself is always global, since
    one file's hash can be part of another's.

    Returns False if a shared cache could not take the new generation (Redis
    down); this process's own memo is cleared either way.
    """
    from django.core.files.storage import storages

    from freshstatic.cache import invalidate as invalidate_caches

    # Make sure the configured storage exists in this process (a deploy hook
    # may never have rendered a page), so its cache generation is bumped.
    storages["staticfiles"]
    return invalidate_caches(None if names is None else tuple(names))
