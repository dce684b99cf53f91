"""Signals sent by django-freshstatic."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after hashes were invalidated, by the watcher for each debounced batch
# of file changes and by freshstatic.invalidate(). Keyword argument ``names``:
# a tuple of the static names that changed, or None for "everything".
static_changed = Signal()
