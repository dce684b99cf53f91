"""The stylesheet reader: pure text in, text out."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from freshstatic import css


def tagged(text: str) -> str:
    return css.rewrite(text, lambda reference: f"<{reference}>")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (".a{background:url(img/a.png)}", ".a{background:url(<img/a.png>)}"),
        (".a{background:url( 'img/a.png' )}", ".a{background:url( '<img/a.png>' )}"),
        ('.a{background:URL("a b.png")}', '.a{background:URL("<a b.png>")}'),
        ('@import "base.css";', '@import "<base.css>";'),
        ("@import 'base.css' screen;", "@import '<base.css>' screen;"),
        ('@import url("base.css");', '@import url("<base.css>");'),
        (
            "/*# sourceMappingURL=site.css.map */",
            "/*# sourceMappingURL=<site.css.map> */",
        ),
        ("a{b:url(x.png#frag)}", "a{b:url(<x.png#frag>)}"),
    ],
)
def test_references_are_found(text: str, expected: str) -> None:
    assert tagged(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/* .a{background:url(img/a.png)} */",
        '.a{content:"url(img/a.png)"}',
        ".a{content:'@import \"x.css\"'}",
        ".a{background:url(data:image/png;base64,AAAA)}",
        ".a{background:url(https://cdn.example/a.png)}",
        ".a{background:url(//cdn.example/a.png)}",
        ".a{background:url(#gradient)}",
        ".a{background:url()}",
        ".a{background:myurl(a.png)}",
        "/* unclosed comment url(a.png)",
        ".a{content:'unclosed string url(a.png)\n}",
        ".a{background:url(a b.png)}",
        "/*# sourceMappingURL=unclosed.map",
    ],
)
def test_what_is_not_a_reference_is_left_alone(text: str) -> None:
    assert tagged(text) == text


def test_references_lists_them_in_order() -> None:
    text = '@import "a.css";\n.b{background:url(b.png)}\n.c{x:url(http://h/c)}'
    assert css.references(text) == ["a.css", "b.png"]


def test_escapes_in_strings_do_not_end_them() -> None:
    text = r""".a{content:"\"url(x.png)"} .b{background:url(y.png)}"""
    assert tagged(text) == text.replace("url(y.png)", "url(<y.png>)")


def count_steps(function: Callable[[], Any]) -> int:
    """Every Python-level and C-level call made while ``function`` runs."""
    steps = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal steps
        steps += 1

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return steps


MALFORMED = [
    # An unterminated string full of escaped quotes (backtracking's worst).
    lambda size: "a{content:'" + "\\'" * size,
    lambda size: 'a{b:url("' + '\\"' * size,
    lambda size: "url(" * size,
    lambda size: "url(a " * size,
    lambda size: "@import " * size,
    lambda size: "/*" * size,
    lambda size: "a{b:url(" + "x" * size,
    lambda size: ("url('" + "x" * 50 + "\n") * (size // 50 + 1),
]


@pytest.mark.parametrize("make", MALFORMED)
def test_reading_is_linear_on_malformed_input(make: Callable[[int], str]) -> None:
    """
    Doubling the input at most doubles the work (counted in calls, not
    time); and a megabyte of it is read at all (a quadratic reader would
    take hours).
    """
    small = count_steps(lambda: css.rewrite(make(10_000), str))
    large = count_steps(lambda: css.rewrite(make(20_000), str))
    assert large <= 2.2 * small + 100
    megabyte = make(500_000)
    assert len(css.rewrite(megabyte, str)) == len(megabyte)


def test_a_megabyte_of_references_is_rewritten_whole() -> None:
    text = ".a{background:url(a.png)}\n" * 40_000
    rewritten = tagged(text)
    assert len(re.findall(r"url\(<a\.png>\)", rewritten)) == 40_000
