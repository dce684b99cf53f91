"""
Warnings about static files, each logged once, in bounded memory.

A bad name can come from a request or from user input passed to
``static()``, so the names already warned about are kept up to a byte budget;
past it, further problems are counted and summed up at most once a minute
instead of being logged one by one.
"""

from __future__ import annotations

import logging
import threading
from time import monotonic

logger = logging.getLogger("freshstatic")

# What the names already warned about may take, and how often the summary of
# the warnings not logged (once the budget is spent) may be written.
WARNED_MAX_BYTES = 1024 * 1024
SUMMARY_INTERVAL_SECONDS = 60.0
# A set entry's own cost beside its characters (str header, hash slot).
_ENTRY_OVERHEAD_BYTES = 100

_lock = threading.Lock()
_warned: set[str] = set()
_warned_bytes = 0
_suppressed = 0
_summary_due = 0.0


def warn_once(key: str, message: str, *args: object) -> None:
    """Log ``message`` the first time ``key`` is seen in this process."""
    global _warned_bytes, _suppressed, _summary_due
    cost = len(key) + _ENTRY_OVERHEAD_BYTES
    with _lock:
        if key in _warned:
            return
        if _warned_bytes + cost <= WARNED_MAX_BYTES:
            _warned.add(key)
            _warned_bytes += cost
        else:
            _suppressed += 1
            now = monotonic()
            if now < _summary_due:
                return
            suppressed, _suppressed = _suppressed, 0
            _summary_due = now + SUMMARY_INTERVAL_SECONDS
            logger.warning(
                "%d more problems with static files were not logged one by one "
                "(too many distinct names); the latest: " + message,
                suppressed,
                *args,
            )
            return
    logger.warning(message, *args)


def forget() -> None:
    """Warn again about everything (tests; a settings change)."""
    global _warned_bytes, _suppressed, _summary_due
    with _lock:
        _warned.clear()
        _warned_bytes = 0
        _suppressed = 0
        _summary_due = 0.0
