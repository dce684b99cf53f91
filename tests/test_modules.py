"""What a JavaScript module imports: pure text in, text out."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from freshstatic import modules

NPM = Path(__file__).resolve().parent / "fixtures" / "npm"


def found(text: str) -> list[tuple[str, bool]]:
    return [(item.specifier, item.dynamic) for item in modules.scan(text)]


def tagged(text: str) -> str:
    return modules.rewrite(text, lambda specifier: f"<{specifier}>")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('import a from "./a.js";', [("./a.js", False)]),
        ("import {a as b, c} from './a.js'", [("./a.js", False)]),
        ('import * as ns from "./a.js"', [("./a.js", False)]),
        ('import a, {b} from "./a.js"', [("./a.js", False)]),
        ('import "./a.js";', [("./a.js", False)]),
        (
            'import{a}from"./a.js";import"./b.js"',
            [("./a.js", False), ("./b.js", False)],
        ),
        ('export * from "./a.js";', [("./a.js", False)]),
        ('export * as ns from "./a.js";', [("./a.js", False)]),
        ('export { a, b as c } from "./a.js";', [("./a.js", False)]),
        ('import a from "./a.json" with { type: "json" };', [("./a.json", False)]),
        ('import {\n  a,\n  b,\n} from\n  "./a.js";', [("./a.js", False)]),
        ('const m = await import("./a.js");', [("./a.js", True)]),
        ("import( './a.js' ).then(use)", [("./a.js", True)]),
        ("import(`./a.js`)", [("./a.js", True)]),
        ('import("./a.js", { with: { type: "json" } })', [("./a.js", True)]),
        (
            'import(/* webpackChunkName: "a" */ "./a.js")',
            [("./a.js", True)],
        ),
        (
            'import x from "lit"; import "/static/js/a.js"',
            [("lit", False), ("/static/js/a.js", False)],
        ),
        ("#!/usr/bin/env node\nimport './a.js'", [("./a.js", False)]),
        ('[...import.meta.url]; import "./a.js"', [("./a.js", False)]),
    ],
)
def test_imports_are_found(text: str, expected: list[tuple[str, bool]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '// import a from "./no.js"',
        '/* import "./no.js" */',
        "/** @typedef {import('./no.js').Thing} Thing */",
        "/** Example:\n * import {html} from 'lit';\n */",
        "const s = \"import a from './no.js'\";",
        "const s = 'export * from \"./no.js\"';",
        'const t = `import "./no.js"`;',
        "const t = `${`${\"import('./no.js')\"}`}`;",
        'loader.import("./no.js")',
        'loader.from("./no.js")',
        'Array.from("./no.js")',
        'obj?.import("./no.js")',
        'this.#import("./no.js")',
        'reimport("./no.js"); $import("./no.js"); import_("./no.js")',
        "const u = import.meta.url;",
        "import(name)",
        "import(`./${name}.js`)",
        'import("./no" + ".js")',
        "const o = { import: 1, from: 2 };",
        "class A { import(x) { return x } }",
        'from\n"./no.js"',
        'import a from "./no\\u002ejs"',
        'import a from ""',
        'import a from "./unclosed.js',
        "const t = `unclosed template import './no.js'",
        "/* unclosed comment import './no.js'",
    ],
)
def test_what_is_not_an_import_is_left_alone(text: str) -> None:
    assert found(text) == []
    assert tagged(text) == text


@pytest.mark.parametrize(
    "code",
    [
        # Regex literals with quotes, comment openers, slashes in a class,
        # and a template's backtick: none of them may start anything.
        "const q = /'/g;",
        'const q = /"/g;',
        "const q = /`/g;",
        "const c = /\\/\\//;",
        "const c = /[/*]/;",
        "const c = /[/]'/;",
        "if (/'/.test(s)) {}",
        "x = s.replace(/[\"']/g, '');",
        'return /"/.test(s);',
        "const t = typeof /'/;",
        "f(a, /'/, b);",
        "a = b ? /'/ : /\"/;",
        "}\n/'/.test(s);",
        # Divisions that look like the start of a regex.
        "const h = a / 2, w = b / 'x'.length;",
        "const h = f(a) / 2 / g(b);",
        "const h = arr[0] / 2 / arr[1];",
        "const h = i++ / 2 / j--;",
        "const h = 10 / 2 / 5;",
        "const h = `a` / 2 / `b`;",
        "const h = x\n/ 2 /\ny;",
        # Templates whose substitutions hold braces, strings and templates.
        "const t = `${ {a: '`'}.a }`;",
        "const t = `a${b ? `c${d}` : '}'}e`;",
        "const t = `${ (() => { return 1 })() }`;",
        "const t = `\\${ not a substitution`;",
        # Strings that end at their line, with escapes and continuations.
        "const s = 'it\\'s';",
        'const s = "line \\\n continued";',
        "const s = 'unclosed\nconst t = 1;",
        "const s = 'a\\\\';",
    ],
)
def test_tricky_code_around_imports(code: str) -> None:
    text = f'import a from "./a.js";\n{code}\nimport b from "./b.js";\n'
    assert found(text) == [("./a.js", False), ("./b.js", False)]


def test_comments_between_the_parts() -> None:
    text = 'import /* x */ a /* y */ from /* "./no.js" */ "./a.js" // z'
    assert found(text) == [("./a.js", False)]
    assert tagged(text) == text.replace('"./a.js"', '"<./a.js>"')


def test_imports_lists_each_once_in_order() -> None:
    text = (
        'import "./b.js"; import {x} from "./a.js"; export {y} from "./b.js";'
        ' import("./c.js")'
    )
    assert modules.imports(text) == ["./b.js", "./a.js", "./c.js"]
    assert modules.static_imports(text) == ["./b.js", "./a.js"]


def test_rewrite_changes_the_specifiers_only() -> None:
    text = (
        "import a from './a.js';\n"
        'export * from "./b.js";\n'
        "const c = import(`./c.js`);\n"
        "const s = 'import \"./d.js\"';\n"
    )
    assert tagged(text) == (
        "import a from '<./a.js>';\n"
        'export * from "<./b.js>";\n'
        "const c = import(`<./c.js>`);\n"
        "const s = 'import \"./d.js\"';\n"
    )
    assert modules.rewrite(text, str) == text


# What a JavaScript parser (acorn 8, sourceType "module") finds in each file:
# see tests/fixtures/npm/README.md.
NPM_IMPORTS: dict[str, list[tuple[str, bool]]] = {
    # Minified: regex literals with quotes and slashes (/'/g, /"/g,
    # /<(?:(!--|\/[^a-zA-Z])|(\/?[a-zA-Z][^>\s]*)|(\/?$))/g), templates with
    # nested ${} holding quotes; no imports.
    "lit-html/lit-html.js": [],
    "lit-html/directive.js": [],
    "lit-html/directive-helpers.js": [("./lit-html.js", False)],
    "lit-html/async-directive.js": [
        ("./directive-helpers.js", False),
        ("./directive.js", False),
        ("./directive.js", False),
    ],
    "lit-html/directives/until.js": [
        ("../lit-html.js", False),
        ("../directive-helpers.js", False),
        ("../async-directive.js", False),
        ("./private-async-helpers.js", False),
        ("../directive.js", False),
    ],
    "lit-html/directives/private-async-helpers.js": [],
    # import"…";export*from"…": bare specifiers, side effects, re-exports.
    "lit/index.js": [
        ("@lit/reactive-element", False),
        ("lit-html", False),
        ("lit-element/lit-element.js", False),
        ("lit-html/is-server.js", False),
    ],
    "@lit/reactive-element/css-tag.js": [],
    # Readable, with "// import {HTMLElement, customElements} from
    # '@lit-labs/ssr-dom-shim';" in a comment: not an import.
    "@lit/reactive-element/development/reactive-element.js": [
        ("./css-tag.js", False),
        ("./css-tag.js", False),
    ],
    "preact/hooks/hooks.module.js": [("preact", False)],
    # A multi-line import, and import( `${RAPIER_PATH}` ): not a literal.
    "three/physics/RapierPhysics.js": [("three", False)],
}


@pytest.mark.parametrize("name", sorted(NPM_IMPORTS))
def test_real_modules_from_npm(name: str) -> None:
    text = (NPM / name).read_text(encoding="utf-8")
    assert found(text) == NPM_IMPORTS[name]
    # Rewriting touches exactly those specifiers, in place.
    rewritten = modules.rewrite(text, lambda specifier: specifier + "?v=1")
    assert len(rewritten) == len(text) + 4 * len(NPM_IMPORTS[name])
    assert found(rewritten) == [
        (specifier + "?v=1", dynamic) for specifier, dynamic in NPM_IMPORTS[name]
    ]


def test_every_fixture_is_listed() -> None:
    on_disk = {
        str(path.relative_to(NPM)) for path in NPM.rglob("*.js") if path.is_file()
    }
    assert on_disk == set(NPM_IMPORTS)


# -- specifiers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specifier", "bare", "url"),
    [
        ("lit", True, False),
        ("@lit/reactive-element", True, False),
        ("lodash/fp.js", True, False),
        ("./a.js", False, False),
        ("../a.js", False, False),
        ("/static/a.js", False, False),
        ("https://cdn.example/a.js", False, True),
        ("//cdn.example/a.js", False, True),
        ("data:text/javascript,export default 1", False, True),
        ("node:fs", False, True),
    ],
)
def test_bare_specifiers_and_urls(specifier: str, bare: bool, url: bool) -> None:
    assert modules.is_bare(specifier) is bare
    assert modules.is_url(specifier) is url


def test_mapped_as_a_browser_maps_bare_specifiers() -> None:
    import_map = {
        "lit": "vendor/lit/index.js",
        "lit/": "vendor/lit/",
        "lit/directives/": "vendor/lit-directives/",
        "broken/": "vendor/broken.js",
    }
    assert modules.mapped("lit", import_map) == "vendor/lit/index.js"
    assert modules.mapped("lit/x.js", import_map) == "vendor/lit/x.js"
    # The longest matching prefix wins.
    assert modules.mapped("lit/directives/until.js", import_map) == (
        "vendor/lit-directives/until.js"
    )
    assert modules.mapped("preact", import_map) is None
    assert modules.mapped("broken/x.js", import_map) is None


def test_closure_follows_imports_once_and_ends_cycles() -> None:
    graph = {"app": ["a", "b"], "a": ["c", "app"], "b": ["c"], "c": ["a"]}
    calls: list[str] = []

    def imports_of(name: str) -> list[str]:
        calls.append(name)
        return graph.get(name, [])

    assert modules.closure(["app", "app"], imports_of) == ["app", "a", "b", "c"]
    assert sorted(calls) == ["a", "app", "b", "c"]  # each read once


# -- linear time ------------------------------------------------------------------


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


class Observed:
    """
    One of the reader's compiled expressions, counting the characters its
    searches go over: one call of a C-level search can read far, which a
    count of calls alone does not see.
    """

    def __init__(self, pattern: re.Pattern[str], counter: list[int]) -> None:
        self.pattern = pattern
        self.counter = counter

    def search(self, text: str, position: int = 0) -> re.Match[str] | None:
        match = self.pattern.search(text, position)
        self.counter[0] += (len(text) if match is None else match.end()) - position
        return match

    def match(self, text: str, position: int = 0) -> re.Match[str] | None:
        # Only expressions that read one character, or a run they consume.
        match = self.pattern.match(text, position)
        self.counter[0] += 1 if match is None else match.end() - position + 1
        return match


@pytest.fixture
def characters_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every compiled expression the reader uses, observed."""
    counter = [0]
    for name, value in vars(modules).items():
        if isinstance(value, re.Pattern):
            monkeypatch.setattr(modules, name, Observed(value, counter))
        elif isinstance(value, dict) and all(
            isinstance(item, re.Pattern) for item in value.values()
        ):
            observed = {key: Observed(item, counter) for key, item in value.items()}
            monkeypatch.setattr(modules, name, observed)
    return counter


def work(function: Callable[[], Any], characters_read: list[int]) -> int:
    """Calls made, plus characters gone over by searches, while ``function``
    runs."""
    characters_read[0] = 0
    steps = count_steps(function)
    return steps + characters_read[0]


MALFORMED = [
    pytest.param(lambda size: "import(" * size, id="import-calls"),
    pytest.param(lambda size: "import(`" * size, id="import-templates"),
    pytest.param(lambda size: "import x " + "from " * size, id="from-runs"),
    pytest.param(lambda size: "export { " + "from 'a' " * size, id="export-from-runs"),
    # A regex that never closes, on one long line (each "/" would start one).
    pytest.param(lambda size: "(/[" * size, id="unclosed-regex-line"),
    pytest.param(lambda size: "x = (/" + "\\/" * size, id="regex-escapes"),
    pytest.param(lambda size: "a / " * size, id="divisions"),
    pytest.param(lambda size: "return /x/ / " * size, id="return-regexes"),
    pytest.param(lambda size: "'" + "\\'" * size, id="string-escapes"),
    pytest.param(lambda size: "`${" * size, id="template-nesting"),
    pytest.param(lambda size: "`${`" * size, id="template-in-template"),
    pytest.param(lambda size: "/*" * size, id="comment-openers"),
    pytest.param(lambda size: "//" * size, id="line-comments"),
    pytest.param(lambda size: "import(/*" * size, id="import-comment"),
    pytest.param(lambda size: "x." + "import " * size, id="property-imports"),
    pytest.param(lambda size: " " * size + "/", id="spaces-then-slash"),
    pytest.param(lambda size: "a" * size + " / 2", id="long-word-then-slash"),
    pytest.param(
        lambda size: ("(/[" + "x" * 50 + "\n") * (size // 50 + 1),
        id="unclosed-regex-lines",
    ),
]


@pytest.mark.parametrize("make", MALFORMED)
def test_reading_is_linear_on_malformed_input(
    make: Callable[[int], str], characters_read: list[int]
) -> None:
    # Every step consumes what it read: twice the input, about twice the
    # work (a quadratic reader would take four times as much). The input is
    # generated outside the measured call.
    small_text, large_text = make(1_000), make(2_000)
    small = work(lambda: modules.scan(small_text), characters_read)
    large = work(lambda: modules.scan(large_text), characters_read)
    assert small >= len(small_text) // 2  # the searches are seen
    assert large <= 2.2 * small + 100
    megabyte = make(200_000)
    assert len(modules.rewrite(megabyte, str)) == len(megabyte)


def test_a_megabyte_of_real_module_code_is_read_whole(
    characters_read: list[int],
) -> None:
    module = (NPM / "lit-html/directives/until.js").read_text(encoding="utf-8")
    text = module * (1_000_000 // len(module))
    expected = NPM_IMPORTS["lit-html/directives/until.js"] * (1_000_000 // len(module))
    assert found(text) == expected
    half = module * (500_000 // len(module))
    small = work(lambda: modules.scan(half), characters_read)
    large = work(lambda: modules.scan(half + half), characters_read)
    assert large <= 2.2 * small + 100
