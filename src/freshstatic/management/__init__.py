"""Helpers shared by the management commands."""

from __future__ import annotations

from django.core.files.storage import storages
from django.core.management.base import CommandError

from freshstatic.storage import FreshStaticMixin


def fresh_storage() -> FreshStaticMixin:
    """The configured staticfiles storage, or a clear error if it is not ours."""
    storage = storages["staticfiles"]
    if not isinstance(storage, FreshStaticMixin):
        raise CommandError(
            "STORAGES['staticfiles'] is not a freshstatic storage "
            f"({type(storage).__module__}.{type(storage).__qualname__})."
        )
    return storage
