"""
References inside stylesheets: ``url(...)``, ``@import "..."`` and
``sourceMappingURL`` comments. Pure text in, text out; resolving a reference
to a static file is the caller's job.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# One pass over the stylesheet; at each position the first alternative that
# matches wins, so url() inside a comment or a string is never seen as one.
_TOKENS = re.compile(
    r"""
      (?P<comment>/\*.*?(?:\*/|\Z))
    | (?P<qurl>\burl\(\s*(?P<q>["'])(?P<qurl_ref>[^\n]*?)(?P=q)\s*\))
    | (?P<url>\burl\(\s*(?P<url_ref>[^"'()\s]*)\s*\))
    | (?P<import>@import\s+(?P<iq>["'])(?P<import_ref>[^"']*)(?P=iq))
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    """,
    re.DOTALL | re.IGNORECASE | re.VERBOSE,
)
_SOURCE_MAP = re.compile(
    r"(?P<head>^/\*[#@]\s*sourceMappingURL=)(?P<ref>\S+?)(?=\s*\*/$)"
)
# Absolute URLs (http:, data:, //host), fragment-only and empty references
# point at nothing in the static folders.
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#|$)", re.IGNORECASE)


def is_external(reference: str) -> bool:
    return bool(_EXTERNAL.match(reference.strip()))


def rewrite(text: str, replace: Callable[[str], str]) -> str:
    """
    Return ``text`` with every static reference passed through ``replace``
    (which returns it unchanged to leave it alone). External references,
    comments (other than ``sourceMappingURL``) and strings are never passed.
    """

    def substitute(match: re.Match[str]) -> str:
        kind = match.lastgroup
        whole = match.group(0)
        if kind in ("url", "qurl", "import"):
            group = f"{kind}_ref"
            reference = match.group(group)
            if is_external(reference):
                return whole
            start, end = match.span(group)
            offset = match.start()
            return whole[: start - offset] + replace(reference) + whole[end - offset :]
        if kind == "comment":
            source_map = _SOURCE_MAP.match(whole)
            if source_map and not is_external(source_map["ref"]):
                return (
                    source_map["head"]
                    + replace(source_map["ref"])
                    + whole[source_map.end("ref") :]
                )
        return whole

    return _TOKENS.sub(substitute, text)
