"""
References inside stylesheets: ``url(...)``, ``@import "..."`` and
``sourceMappingURL`` comments. Pure text in, text out; resolving a reference
to a static file is the caller's job.

The reader is a single forward scan: every step consumes what it looked at,
and each search starts where the previous one stopped, so its cost is linear
in the stylesheet's length whatever the input (an unterminated string or
comment, a million ``url(``, stray backslashes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

# Where something that matters may start: a comment, a string, url( or @import.
_START = re.compile(r"/\*|[\"']|\burl\(|@import", re.IGNORECASE)
# Inside a string, the characters that end or escape it.
_STRING_STOP = {'"': re.compile(r'["\\\n]'), "'": re.compile(r"['\\\n]")}
_SPACE = re.compile(r"\s*")
_UNQUOTED = re.compile(r"[^\"'()\\\s]*")
_SOURCE_MAP = re.compile(r"[#@][ \t]*sourceMappingURL=(\S+)\s*$")
# Absolute URLs (http:, data:, //host), fragment-only and empty references
# point at nothing in the static folders.
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#|$)", re.IGNORECASE)


def is_external(reference: str) -> bool:
    return bool(_EXTERNAL.match(reference.strip()))


def _skip(pattern: re.Pattern[str], text: str, position: int) -> int:
    """Where a run of what ``pattern`` matches, starting at ``position``, ends."""
    match = pattern.match(text, position)
    return position if match is None else match.end()


def _string_end(text: str, quote: int) -> tuple[int, bool]:
    """
    Where the string whose opening quote is at ``quote`` ends (just past its
    closing quote), and whether it was closed; an unclosed string ends at the
    line's end, as CSS says.
    """
    stop = _STRING_STOP[text[quote]]
    position = quote + 1
    while True:
        match = stop.search(text, position)
        if match is None:
            return len(text), False
        char = match.group()
        if char == "\\":
            position = match.end() + 1  # the escaped character, whatever it is
        elif char == "\n":
            return match.start(), False
        else:
            return match.end(), True


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """The (start, end) of every static-file candidate reference, in order."""
    position = 0
    length = len(text)
    while position < length:
        match = _START.search(text, position)
        if match is None:
            return
        opener = match.group()
        start = match.end()
        if opener == "/*":
            close = text.find("*/", start)
            if close == -1:
                return  # an unclosed comment runs to the end
            source_map = _SOURCE_MAP.match(text, start, close)
            if source_map:
                yield source_map.span(1)
            position = close + 2
        elif opener in ("'", '"'):
            position, _closed = _string_end(text, match.start())
        elif opener.lower() == "url(":
            inner = _skip(_SPACE, text, start)
            if inner < length and text[inner] in "'\"":
                position, closed = _string_end(text, inner)
                after = _skip(_SPACE, text, position)
                if closed and text.startswith(")", after):
                    yield inner + 1, position - 1
                    position = after + 1
            else:
                unquoted_end = _skip(_UNQUOTED, text, inner)
                after = _skip(_SPACE, text, unquoted_end)
                if text.startswith(")", after):
                    yield inner, unquoted_end
                    position = after + 1
                else:
                    # Not a url() token: go on from where it stopped being one.
                    position = max(unquoted_end, start)
        else:  # @import followed by a string (a url() form is found above)
            inner = _skip(_SPACE, text, start)
            if inner < length and text[inner] in "'\"":
                position, closed = _string_end(text, inner)
                if closed:
                    yield inner + 1, position - 1
            else:
                position = start


def references(text: str) -> list[str]:
    """Every reference in ``text`` that may name a static file, in order."""
    references: list[str] = []
    for start, end in _spans(text):
        reference = text[start:end]
        if not is_external(reference):
            references.append(reference)
    return references


def rewrite(text: str, replace: Callable[[str], str]) -> str:
    """
    Return ``text`` with every static reference passed through ``replace``
    (which returns it unchanged to leave it alone). External references,
    comments (other than ``sourceMappingURL``) and strings are never passed.
    """
    parts: list[str] = []
    done = 0
    for start, end in _spans(text):
        reference = text[start:end]
        if is_external(reference):
            continue
        parts.append(text[done:start])
        parts.append(replace(reference))
        done = end
    parts.append(text[done:])
    return "".join(parts)
