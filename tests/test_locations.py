from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import utils
from django.contrib.staticfiles.finders import FileSystemFinder, get_finders
from django.core.files.storage import FileSystemStorage, Storage, storages
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


def django_listing(storage: Storage) -> list[tuple[str, str]]:
    """What collectstatic lists: the storage's own files, then the finders'."""
    patterns = locations.ignore_patterns()
    found: dict[str, str] = {}
    for path in utils.get_files(storage, patterns):
        found.setdefault(path, storage.path(path))
    for finder in get_finders():
        for path, finder_storage in finder.list(patterns):
            prefix = getattr(finder_storage, "prefix", None)
            name = posixpath.join(prefix, path) if prefix else path
            found.setdefault(name, finder_storage.path(path))
    return list(found.items())


@pytest.fixture
def tangled_tree(static_tree: StaticTree, tmp_path: Path) -> StaticTree:
    """Nested folders, ignored names and every kind of symlink."""
    for name in (
        "a.css",
        "css/b.css",
        "css/deep/er/c.js",
        "css/.hidden",
        "css/edited.css~",
        "CVS/entries",
        "vendor/lib/d.js",
    ):
        static_tree.write(name, name.encode())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "outside.css").write_bytes(b"outside")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    plain = static_tree.plain
    os.symlink(elsewhere, plain / "linked-out")
    os.symlink(plain / "css" / "deep", plain / "linked-in")
    os.symlink(tmp_path / "secret.txt", plain / "secret.css")
    os.symlink(tmp_path / "missing", plain / "broken.css")
    os.mkfifo(plain / "fifo.css")
    return static_tree


def test_list_files_lists_exactly_as_collectstatic_does(
    tangled_tree: StaticTree, tmp_path: Path
) -> None:
    collected = tmp_path / "collected"
    (collected / "css").mkdir(parents=True)
    (collected / "css" / "b.css").write_bytes(b"collected")
    with override_settings(STATIC_ROOT=str(collected)):
        storage = storages["staticfiles"]
        listing = locations.list_files(storage)
        expected = django_listing(storage)
    assert list(listing.paths.items()) == expected
    assert locations.all_files(storage) == dict(expected)
    assert "linked-out/outside.css" in listing.paths
    assert "css/.hidden" not in listing.paths


def test_list_files_knows_the_regular_files_reached_without_symlinks(
    tangled_tree: StaticTree,
) -> None:
    listing = locations.list_files(storages["staticfiles"])
    unlinked = {
        name
        for name, path in listing.paths.items()
        if path is not None
        and os.path.realpath(path) == path
        and Path(path).is_file()
        and not Path(path).is_symlink()
    }
    assert set(listing.inodes) == unlinked
    assert {"a.css", "css/deep/er/c.js", "vendor/lib/d.js"} <= unlinked
    for name in ("linked-in/er/c.js", "secret.css", "fifo.css", "broken.css"):
        assert name in listing.paths
        assert name not in listing.inodes
    for name, inode in listing.inodes.items():
        info = os.stat(str(listing.paths[name]))
        assert inode == (info.st_dev, info.st_ino)


class HidingStorage(FileSystemStorage):
    """A folder whose listing leaves out one file (its own listdir())."""

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        folders, files = super().listdir(path)
        return folders, [name for name in files if name != "hidden.css"]


class HidingFinder(FileSystemFinder):
    """A finder with its own list()."""

    def list(self, ignore_patterns: Any) -> Any:
        for path, storage in super().list(ignore_patterns):
            if not path.endswith("hidden.css"):
                yield path, storage


def test_storages_and_finders_with_their_own_listing_are_asked(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    static_tree.write("shown.css", b"a")
    static_tree.write("hidden.css", b"b")
    collected = tmp_path / "collected"
    collected.mkdir()
    (collected / "hidden.css").write_bytes(b"c")
    (collected / "own.css").write_bytes(b"d")
    finders = [f"{__name__}.HidingFinder"]
    with override_settings(STATICFILES_FINDERS=finders):
        listing = locations.list_files(HidingStorage(location=str(collected)))
    assert list(listing.paths) == ["own.css", "shown.css"]
    assert listing.inodes == {}


def test_open_listed_opens_only_the_file_listed(static_tree: StaticTree) -> None:
    path = static_tree.write("a.css", b"listed")
    listing = locations.list_files(storages["staticfiles"])
    inode = listing.inodes["a.css"]
    stream = locations.open_listed(str(path), inode)
    assert stream is not None
    with stream:
        assert stream.read() == b"listed"
    replacement = static_tree.write("a.css.new", b"another file")
    replacement.replace(path)
    assert locations.open_listed(str(path), inode) is None
    assert locations.open_listed(str(static_tree.plain / "gone.css"), inode) is None


def test_open_listed_never_opens_what_replaced_a_folder(
    static_tree: StaticTree, tmp_path: Path, opened_paths: list[str]
) -> None:
    static_tree.write("css/a.css", b"listed")
    listing = locations.list_files(storages["staticfiles"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.css").write_bytes(b"secret")
    (static_tree.plain / "css").rename(tmp_path / "old-css")
    os.symlink(elsewhere, static_tree.plain / "css")
    opened_paths.clear()
    path = str(listing.paths["css/a.css"])
    assert locations.open_listed(path, listing.inodes["css/a.css"]) is None
    assert opened_paths == []
