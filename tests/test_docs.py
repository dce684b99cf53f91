"""The documentation states the code's own defaults."""

from __future__ import annotations

import ast
import re

import pytest

from freshstatic.conf import DEFAULTS, STORAGE_DEFAULTS
from tests.utils import ROOT

CONFIGURATION = ROOT / "docs" / "configuration.md"
ENTRY = re.compile(
    r"^### `(?P<key>\w+)`\n(?P<body>.*?)(?=^##|\Z)", re.MULTILINE | re.DOTALL
)
DEFAULT = re.compile(r"^- \*\*Default:\*\* `(?P<value>.+?)`\s*$", re.MULTILINE)


def documented(section: str) -> dict[str, object]:
    text = CONFIGURATION.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    chunk = text[start : end if end != -1 else len(text)]
    values = {}
    for entry in ENTRY.finditer(chunk):
        match = DEFAULT.search(entry["body"])
        assert match, f"{entry['key']} has no '- **Default:**' line"
        values[entry["key"]] = ast.literal_eval(match["value"])
    return values


@pytest.mark.parametrize(
    ("section", "defaults"),
    [("FRESHSTATIC settings", DEFAULTS), ("Storage options", STORAGE_DEFAULTS)],
)
def test_documented_defaults_match_the_code(
    section: str, defaults: dict[str, object]
) -> None:
    assert documented(section) == defaults


def test_every_check_id_is_documented() -> None:
    checks = (ROOT / "src/freshstatic/checks.py").read_text()
    ids = set(re.findall(r'id="(freshstatic\.[EW]\d{3})"', checks))
    assert ids
    pages = (ROOT / "docs" / "checks.md").read_text() + (ROOT / "README.md").read_text()
    assert {check_id for check_id in ids if check_id not in pages} == set()
