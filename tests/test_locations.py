from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.storage import storages
from django.test import override_settings

from freshstatic import locations
from tests.utils import PACKAGE_STATIC_NAMES, ROOT, StaticTree


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("css/site.css", "css/site.css"),
        ("./css//site.css", "css/site.css"),
        ("a/../b.css", "b.css"),
        ("../x", None),
        ("a/../../x", None),
        ("..", None),
        (".", None),
        ("", None),
        ("/etc/passwd", None),
        ("a\x00.css", None),
        ("..\\x", None),
    ],
)
def test_clean_name(name: str, expected: str | None) -> None:
    assert locations.clean_name(name) == expected


def test_finder_roots_cover_dirs_prefixes_and_apps(static_tree: StaticTree) -> None:
    roots = locations.finder_roots()
    assert ("", str(static_tree.plain)) in roots
    assert ("vendor", str(static_tree.prefixed)) in roots
    assert ("", str(ROOT / "tests" / "testapp" / "static")) in roots


def test_open_within_resolves_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("inside")
    (tmp_path / "out").write_text("x")
    (tmp_path / "rootsibling").write_text("x")
    os.symlink(tmp_path / "out", root / "link")
    with locations.open_within(str(root / "sub" / "f"), [str(root)]) as stream:
        assert stream.read() == b"inside"
    with pytest.raises(locations.OutsideRoots):
        locations.open_within(str(root / "link"), [str(root)])
    with pytest.raises(locations.OutsideRoots):
        locations.open_within(str(tmp_path / "rootsibling"), [str(root)])


def test_all_names_lists_every_location_once_first_wins(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    static_tree.write("a.css", b"a")
    static_tree.write("css/b.css", b"b")
    static_tree.write("vendor/lib/c.js", b"c")
    static_tree.write(".hidden", b"ignored like collectstatic does")
    collected = tmp_path / "collected"
    (collected / "css").mkdir(parents=True)
    (collected / "css" / "b.css").write_bytes(b"collected")
    (collected / "only-collected.css").write_bytes(b"x")
    with override_settings(STATIC_ROOT=str(collected)):
        names = list(locations.all_names(storages["staticfiles"]))
    assert sorted(names) == sorted(
        [
            "a.css",
            "css/b.css",
            "only-collected.css",
            "testapp/css/app.css",
            "vendor/lib/c.js",
            *PACKAGE_STATIC_NAMES,
        ]
    )
    assert len(names) == len(set(names))


def test_all_names_without_static_root(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    assert sorted(locations.all_names(storages["staticfiles"])) == sorted(
        ["a.css", "testapp/css/app.css", *PACKAGE_STATIC_NAMES]
    )
