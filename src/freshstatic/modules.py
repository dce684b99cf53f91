"""
What a JavaScript module imports: the specifiers of ``import … from "…"``,
``export … from "…"``, ``import "…"`` and ``import("…")`` with a string
literal. Pure text in, text out; resolving a specifier to a static file is
the caller's job.

The reader knows just enough JavaScript to tell code from what is not code:
comments, strings, template literals (with ``${…}`` nested to any depth) and
regular expression literals are stepped over whole, so an ``import`` written
inside one (a doc comment's example, a regex, a string of HTML) is never
taken for a real one, and a quote inside a regex never opens a string.
Whether a ``/`` starts a regex or divides is told by what comes before it,
as engines do for all practical code; a regex that would not close on its
line is taken for a division, and no other is tried on that line.

It is a single forward scan: every step consumes what it looked at, each
search starts where the previous one stopped, and what is read backwards
(the word before a ``/``) is read once, so its cost is linear in the
module's length whatever the input (an unterminated string, comment or
template, a million ``import(``, a long line of ``(/[``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

# Where something that matters may start, outside and inside a template's
# ``${…}`` (where braces are counted, to find the one that closes it).
_KEYWORD = r"(?<![\w$#])(?:import|export|from)(?![\w$])"
_START = re.compile(rf"[\"'`/]|{_KEYWORD}")
_START_NESTED = re.compile(rf"[\"'`/{{}}]|{_KEYWORD}")
_LINE_END = re.compile("[\n\r\u2028\u2029]")
_COMMENT_END = re.compile(r"\*/")
_STRING_STOP = {
    '"': re.compile('["\\\\\n\r\u2028\u2029]'),
    "'": re.compile("['\\\\\n\r\u2028\u2029]"),
}
_TEMPLATE_STOP = re.compile(r"[`\\$]")
_REGEX_STOP = re.compile("[/\\\\\\[\\]\n\r\u2028\u2029]")
_SPACE = re.compile(r"\s*")
# Words after which a ``/`` starts a regular expression, not a division.
_KEYWORDS_BEFORE_EXPRESSION = frozenset(
    {
        "await",
        "case",
        "delete",
        "do",
        "else",
        "in",
        "instanceof",
        "new",
        "of",
        "return",
        "throw",
        "typeof",
        "void",
        "yield",
    }
)
# A specifier that names a URL of its own (``https:``, ``data:``, ``//host``)
# rather than a path or a bare name.
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


class Import(NamedTuple):
    """One import in a module's text."""

    specifier: str
    # Where the specifier is in the text (inside its quotes).
    start: int
    end: int
    # ``import("…")``: loaded when the code runs, not with the module.
    dynamic: bool


def scan(text: str) -> list[Import]:
    """Every import of a string-literal specifier in ``text``, in order."""
    return list(_Scanner(text).run())


def imports(text: str) -> list[str]:
    """
    Every specifier module ``text`` may load (static imports, re-exports and
    ``import()`` of a string literal), each once, in order.
    """
    return list(dict.fromkeys(found.specifier for found in scan(text)))


def static_imports(text: str) -> list[str]:
    """The specifiers loaded with module ``text`` (not by ``import()``)."""
    return list(
        dict.fromkeys(found.specifier for found in scan(text) if not found.dynamic)
    )


def rewrite(text: str, replace: Callable[[str], str]) -> str:
    """
    Return ``text`` with every import's specifier passed through ``replace``
    (which returns it unchanged to leave it alone). Nothing else changes.
    """
    parts: list[str] = []
    done = 0
    for found in scan(text):
        parts.append(text[done : found.start])
        parts.append(replace(found.specifier))
        done = found.end
    parts.append(text[done:])
    return "".join(parts)


def is_url(specifier: str) -> bool:
    """Whether ``specifier`` is a URL of its own (``https://…``, ``data:…``)."""
    return bool(_URL.match(specifier))


def is_bare(specifier: str) -> bool:
    """
    Whether ``specifier`` is a bare name (``lit``, ``lodash/fp.js``), which
    only an import map resolves, rather than a path (``./x.js``,
    ``../x.js``, ``/static/x.js``) or a URL.
    """
    return not (
        specifier.startswith(("./", "../", "/")) or specifier in (".", "..")
    ) and not is_url(specifier)


def mapped(specifier: str, import_map: Mapping[str, str]) -> str | None:
    """
    What bare ``specifier`` maps to in ``import_map`` (specifier -> target),
    as a browser maps it: the exact key, else the longest key ending in
    ``/`` that it starts with, its target followed by the rest.
    """
    target = import_map.get(specifier)
    if target is not None:
        return target
    best = ""
    for key in import_map:
        if key.endswith("/") and specifier.startswith(key) and len(key) > len(best):
            best = key
    if not best or not import_map[best].endswith("/"):
        return None
    return import_map[best] + specifier[len(best) :]


def closure(
    roots: Iterable[str], imports_of: Callable[[str], Iterable[str]]
) -> list[str]:
    """
    ``roots`` and everything they import, transitively, each once, in the
    order met (breadth first); ``imports_of(name)`` gives a name's direct
    imports. Cycles end where they close.
    """
    order = list(dict.fromkeys(roots))
    seen = set(order)
    index = 0
    while index < len(order):
        for name in imports_of(order[index]):
            if name not in seen:
                seen.add(name)
                order.append(name)
        index += 1
    return order


class _Scanner:
    """One forward pass over a module's text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.length = len(text)
        # True: a template's ``${``; False: a brace opened inside one.
        self.stack: list[bool] = []
        # Where each comment that ended at a position began, so that what
        # comes before a ``/`` can be read across comments.
        self.comments: dict[int, int] = {}
        # After a regex that did not close on its line, none other is tried
        # before this position (the line's end): each line is read at most
        # twice.
        self.no_regex_before = -1
        # An import or export statement awaits its ``from "…"``.
        self.pending_from = False

    def run(self) -> Iterable[Import]:
        text = self.text
        position = 0
        if text.startswith("#!"):  # a hashbang line
            position = self._line_end(0)
        while position < self.length:
            pattern = _START_NESTED if self.stack else _START
            match = pattern.search(text, position)
            if match is None:
                return
            opener = match.group()
            start = match.start()
            if opener in ('"', "'"):
                position = self._string_end(start)[0]
            elif opener == "`":
                position = self._template(start + 1)
            elif opener == "/":
                position = self._slash(start)
            elif opener == "{":
                self.stack.append(False)
                position = start + 1
            elif opener == "}":
                position = start + 1
                if self.stack.pop():  # the end of a template's ``${…}``
                    position = self._template(position)
            else:
                position, found = self._keyword(opener, start, match.end())
                if found is not None:
                    yield found

    # -- stepping over what is not code ------------------------------------------

    def _line_end(self, position: int) -> int:
        match = _LINE_END.search(self.text, position)
        return self.length if match is None else match.start()

    def _string_end(self, quote: int) -> tuple[int, bool]:
        """
        Just past the string whose quote is at ``quote``, and whether it was
        closed (an unclosed one ends at its line's end).
        """
        text = self.text
        stop = _STRING_STOP[text[quote]]
        position = quote + 1
        while True:
            match = stop.search(text, position)
            if match is None:
                return self.length, False
            char = match.group()
            if char == "\\":
                position = match.end() + 1  # the escaped character
                if text.startswith("\r\n", match.end()):
                    position += 1  # a line continuation
            elif char == text[quote]:
                return match.end(), True
            else:
                return match.start(), False

    def _template(self, position: int) -> int:
        """
        Read template text from ``position``: just past its closing
        backtick, or just past a ``${``, which is then open on the stack.
        """
        text = self.text
        while True:
            match = _TEMPLATE_STOP.search(text, position)
            if match is None:
                return self.length
            char = match.group()
            if char == "\\":
                position = match.end() + 1
            elif char == "`":
                return match.end()
            elif text.startswith("{", match.end()):
                self.stack.append(True)
                return match.end() + 1
            else:
                position = match.end()

    def _comment_end(self, slash: int) -> int | None:
        """Just past the comment that starts at ``slash``, or None if none
        does; an unclosed block comment runs to the end."""
        text = self.text
        if text.startswith("//", slash):
            end = self._line_end(slash + 2)
        elif text.startswith("/*", slash):
            close = _COMMENT_END.search(text, slash + 2)
            end = self.length if close is None else close.end()
        else:
            return None
        self.comments[end] = slash
        return end

    def _skip_trivia(self, position: int) -> int:
        """Where the next token after ``position`` starts (past spaces and
        comments)."""
        while True:
            match = _SPACE.match(self.text, position)
            assert match is not None  # \s* always matches
            position = match.end()
            end = self._comment_end(position)
            if end is None:
                return position
            position = end

    def _slash(self, slash: int) -> int:
        """Step over the comment, regex or division that starts at ``slash``."""
        end = self._comment_end(slash)
        if end is not None:
            return end
        if slash >= self.no_regex_before and self._regex_allowed(slash):
            end = self._regex_end(slash)
            if end is not None:
                return end
            self.no_regex_before = self._line_end(slash)
        return slash + 1  # a division

    def _regex_allowed(self, slash: int) -> bool:
        """Whether a ``/`` at ``slash`` starts a regex, from the token before."""
        text = self.text
        index = slash - 1
        while True:
            while index >= 0 and text[index].isspace():
                index -= 1
            comment = self.comments.get(index + 1)
            if comment is None:
                break
            index = comment - 1
        if index < 0:
            return True
        char = text[index]
        if char in ")]\"'`.":
            return False  # after a value: a division
        if char in "+-" and index > 0 and text[index - 1] == char:
            return False  # after a postfix ++ or --
        if char.isalnum() or char in "_$":
            word_end = index + 1
            while index >= 0 and (text[index].isalnum() or text[index] in "_$"):
                index -= 1
            return text[index + 1 : word_end] in _KEYWORDS_BEFORE_EXPRESSION
        # An operator, an opening bracket, a separator, or a block's "}".
        return True

    def _regex_end(self, slash: int) -> int | None:
        """Just past the body of the regex at ``slash`` (its flags are read as
        code), or None if it does not close on its line."""
        text = self.text
        position = slash + 1
        in_class = False
        while True:
            match = _REGEX_STOP.search(text, position)
            if match is None:
                return None
            char = match.group()
            if char == "\\":
                if _LINE_END.match(text, match.end()):
                    return None
                position = match.end() + 1
            elif char == "[":
                in_class = True
                position = match.end()
            elif char == "]":
                in_class = False
                position = match.end()
            elif char == "/":
                if not in_class:
                    return match.end()
                position = match.end()
            else:
                return None  # the line ended

    # -- imports -------------------------------------------------------------------

    def _is_property(self, start: int) -> bool:
        """Whether the word at ``start`` follows a ``.`` (``x.import``,
        ``Array.from``), but not a spread's ``...``."""
        text = self.text
        index = start - 1
        while index >= 0 and text[index].isspace():
            index -= 1
        return (
            index >= 0
            and text[index] == "."
            and index + 1 not in self.comments  # a comment's last character
            and not (index > 0 and text[index - 1] == ".")
        )

    def _literal(self, position: int) -> tuple[int, int, bool] | None:
        """
        The specifier's span and end of the string literal (or template
        without substitutions) at ``position``: (start, end, closed), where
        end is past the closing quote; None if there is none.
        """
        text = self.text
        if position >= self.length:
            return None
        char = text[position]
        if char in ('"', "'"):
            end, closed = self._string_end(position)
            return position, end, closed
        if char == "`":
            # A template without substitutions or escapes: as good as a string.
            match = _TEMPLATE_STOP.search(text, position + 1)
            if match is not None and match.group() == "`":
                return position, match.end(), True
        return None

    def _import(self, literal: tuple[int, int, bool], dynamic: bool) -> Import | None:
        quote, end, closed = literal
        specifier = self.text[quote + 1 : end - 1]
        if not closed or not specifier or "\\" in specifier:
            return None  # nothing a file could be named by, as written
        return Import(specifier, quote + 1, end - 1, dynamic)

    def _keyword(self, word: str, start: int, end: int) -> tuple[int, Import | None]:
        """Read what follows ``import``, ``export`` or ``from`` at ``start``;
        where to go on from, and the import found, if any."""
        if self._is_property(start):
            return end, None
        if word == "from" and not self.pending_from:
            return end, None
        after = self._skip_trivia(end)
        following = self.text[after : after + 1]
        if word == "from":
            literal = self._literal(after) if following in ('"', "'") else None
            if literal is None:
                return after, None
            self.pending_from = False
            return literal[1], self._import(literal, dynamic=False)
        if word == "export":
            if following in ("*", "{"):
                self.pending_from = True
            return after, None
        # import
        if following == "(":
            inner = self._skip_trivia(after + 1)
            literal = self._literal(inner)
            if literal is None:
                return after + 1, None
            closing = self._skip_trivia(literal[1])
            if self.text[closing : closing + 1] not in (")", ","):
                return after + 1, None  # an expression that starts with a string
            return literal[1], self._import(literal, dynamic=True)
        if following in ('"', "'"):
            literal = self._literal(after)
            assert literal is not None
            return literal[1], self._import(literal, dynamic=False)
        if following != ".":  # not import.meta: a declaration, from "…" to come
            self.pending_from = True
        return after, None
