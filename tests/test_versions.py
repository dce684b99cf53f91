"""The version store: atomic, bounded, shared by processes, never serving bytes
that do not match their name; and what the middleware serves from it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

import freshstatic
from freshstatic import cache as freshcache
from freshstatic import served as served_module
from freshstatic import versions
from freshstatic.conf import (
    VERSIONS_MAX_AGE_DEFAULT_SECONDS,
    VERSIONS_MAX_BYTES_DEFAULT,
    VersionsSetting,
    conf,
    setting_errors,
)
from freshstatic.storage import FreshStaticFilesStorage
from freshstatic.versions import VersionStore
from tests.utils import ROOT, StaticTree, sha, subprocess_env, wait_for

MIDDLEWARE = ["freshstatic.middleware.FreshStaticMiddleware"]
IMMUTABLE = "public, max-age=31536000, immutable"
DAY_SECONDS = 24 * 60 * 60.0


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of_version(data: bytes, covered: tuple[str, ...]) -> str:
    """The digest of a module's version: its bytes' and its imports'."""
    text = "\n".join((digest_of(data), *covered))
    return hashlib.sha256(text.encode()).hexdigest()


def put(store: VersionStore, name: str, data: bytes, length: int = 12) -> bool:
    return store.put(name, data, algorithm="sha256", version=sha(data, length))


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def ref_of(store: VersionStore, data: bytes) -> Path:
    """The file naming ``data`` as a version of some static name."""
    (ref,) = [
        path
        for path in files_under(Path(store.path, "refs"))
        if path.read_bytes() == digest_of(data).encode()
    ]
    return ref


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last used ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def store(tmp_path: Path) -> VersionStore:
    return VersionStore(
        str(tmp_path / "versions"), max_bytes=None, max_age_seconds=None
    )


# -- writing and reading -----------------------------------------------------------


def test_a_version_put_is_found_with_its_exact_bytes(store: VersionStore) -> None:
    data = b"console.log('v1')\n" * 100
    assert put(store, "js/app.js", data)
    found = store.find("js/app.js", sha(data), algorithm="sha256")
    assert found is not None
    assert found.data == data
    assert found.sha256 == found.digest == digest_of(data)
    assert store.get(digest_of(data)) == data


def test_a_version_is_found_under_its_name_only(store: VersionStore) -> None:
    data = b"body { color: red }"
    put(store, "css/a.css", data)
    assert store.find("css/b.css", sha(data), algorithm="sha256") is None
    assert store.find("css/a.css", sha(b"other"), algorithm="sha256") is None
    assert store.find("css/a.css", sha(data), algorithm="blake2b") is None


@pytest.mark.parametrize("version", ["", "abc", "ABCDEF012345", "../../etc", "v" * 12])
def test_a_malformed_version_finds_nothing(store: VersionStore, version: str) -> None:
    data = b"x" * 10
    put(store, "a.js", data)
    assert store.find("a.js", version, algorithm="sha256") is None


def test_every_name_in_the_folder_is_a_digest(store: VersionStore) -> None:
    put(store, "../../etc/passwd", b"not a secret")
    put(store, "css/site.css", b"body{}")
    names = [path.relative_to(store.path) for path in files_under(Path(store.path))]
    assert len(names) == 4  # two objects, two names
    for relative in names:
        kind, shard, rest = relative.parts
        assert kind in ("objects", "refs")
        assert len(shard) == 2
        assert len(rest) == 62
        int(shard + rest, 16)


def test_get_refuses_anything_but_a_digest(store: VersionStore) -> None:
    put(store, "a.js", b"x")
    for name in ("../objects", "", "0" * 63, "g" * 64, "/" + "0" * 63):
        assert store.get(name) is None
        assert not store.has(name)


def test_other_algorithms_name_versions_by_their_own_digest(
    store: VersionStore,
) -> None:
    data = b"@import 'x.css';"
    version = hashlib.blake2b(data).hexdigest()[:16]
    assert store.put("a.css", data, algorithm="blake2b", version=version)
    found = store.find("a.css", version, algorithm="blake2b")
    assert found is not None
    assert found.digest == hashlib.blake2b(data).hexdigest()
    assert found.sha256 == digest_of(data)


def test_bytes_are_never_kept_under_a_version_they_are_not(
    store: VersionStore,
) -> None:
    assert not store.put("a.js", b"new", algorithm="sha256", version=sha(b"old"))
    assert not store.put("a.js", b"new", algorithm="sha256", version="")
    assert not store.put("a.js", b"new", algorithm="md4x", version=sha(b"new"))
    assert files_under(Path(store.path)) == []


# A module and what its version covers beside its bytes (its imports).
MODULE = b'import "./util.js";\nexport const app = 1;\n'
COVERED = ("js/util.js " + "1" * 64, "vendor/lit/index.js " + "2" * 64)


def test_a_module_whose_version_covers_its_imports_is_kept_and_checked(
    store: VersionStore,
) -> None:
    version = digest_of_version(MODULE, COVERED)
    assert version != digest_of(MODULE)
    assert store.put(
        "js/app.js", MODULE, algorithm="sha256", version=version[:12], covered=COVERED
    )
    found = store.find("js/app.js", version[:12], algorithm="sha256")
    assert found is not None
    assert (found.data, found.digest, found.covered) == (MODULE, version, COVERED)
    # Content-addressed as any other bytes: a dictionary for deltas.
    assert found.sha256 == digest_of(MODULE)
    assert store.get(digest_of(MODULE)) == MODULE


def test_a_module_is_never_kept_under_a_version_it_does_not_cover(
    store: VersionStore,
) -> None:
    version = digest_of_version(MODULE, COVERED)[:12]
    for covered in ((), COVERED[:1], (*COVERED, "js/more.js " + "3" * 64)):
        assert not store.put(
            "js/app.js", MODULE, algorithm="sha256", version=version, covered=covered
        )
    assert files_under(Path(store.path)) == []


def test_a_module_whose_name_in_the_store_was_altered_is_dropped(
    store: VersionStore,
) -> None:
    version = digest_of_version(MODULE, COVERED)[:12]
    store.put("js/app.js", MODULE, algorithm="sha256", version=version, covered=COVERED)
    (ref,) = files_under(Path(store.path, "refs"))
    assert ref.read_text() == "\n".join((digest_of(MODULE), *COVERED))
    ref.write_text("\n".join((digest_of(MODULE), COVERED[0])))
    assert store.find("js/app.js", version, algorithm="sha256") is None
    assert not ref.exists()


def test_a_module_covering_too_much_to_name_is_not_kept(store: VersionStore) -> None:
    covered = tuple(f"js/{index}.js {'0' * 64}" for index in range(2000))
    version = digest_of_version(MODULE, covered)[:12]
    assert not store.put(
        "js/app.js", MODULE, algorithm="sha256", version=version, covered=covered
    )
    assert files_under(Path(store.path)) == []


def test_a_file_larger_than_a_quarter_of_the_bound_is_not_kept(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path), max_bytes=4 * 1024 * 1024, max_age_seconds=None)
    assert not put(store, "big.wasm", b"\0" * (1024 * 1024 + 1))
    assert put(store, "small.wasm", b"\0" * (1024 * 1024))


def test_a_write_that_fails_leaves_nothing_behind(
    store: VersionStore, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def failing(source: str, destination: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing)
    assert not put(store, "a.js", b"console.log(1)")
    assert files_under(Path(store.path)) == []  # no temporary file either
    assert "cannot be written" in caplog.text
    monkeypatch.undo()
    assert put(store, "a.js", b"console.log(1)")


def test_writes_go_through_a_temporary_file_renamed_into_place(
    store: VersionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[tuple[str, str, bytes]] = []
    replace = os.replace

    def spying(source: str, destination: str) -> None:
        # The temporary file is complete, beside its destination, before the
        # rename makes it visible under the digest's name.
        renamed.append((source, destination, Path(source).read_bytes()))
        assert not os.path.exists(destination)
        replace(source, destination)

    monkeypatch.setattr(os, "replace", spying)
    data = b"x" * 100_000
    put(store, "a.js", data)
    (object_source, object_path, object_bytes), (_, _ref_path, ref_bytes) = renamed
    assert os.path.dirname(object_source) == os.path.dirname(object_path)
    assert os.path.basename(object_source).startswith(versions.TEMPORARY_PREFIX)
    assert object_bytes == data
    assert ref_bytes == digest_of(data).encode()
    assert Path(object_path).read_bytes() == data


def test_writing_a_version_kept_already_rewrites_nothing(
    store: VersionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"a" * 1000
    put(store, "a.js", data)
    other = VersionStore(store.path, max_bytes=None, max_age_seconds=None)
    monkeypatch.setattr(os, "replace", lambda *args: pytest.fail("rewritten"))
    assert put(other, "a.js", data)  # another process: it looks, and finds it


def test_two_processes_writing_the_same_versions_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "versions"
    start = tmp_path / "start"
    script = (
        "import os, sys, time\n"
        "from freshstatic.versions import VersionStore\n"
        "import hashlib\n"
        "data = [bytes([i]) * (512 * 1024 + i) for i in range(8)]\n"
        "while not os.path.exists(sys.argv[2]):\n"
        "    time.sleep(0.001)\n"
        "for round in range(5):\n"
        "    for i, item in enumerate(data):\n"
        "        # A store that remembers nothing: it writes every time.\n"
        "        store = VersionStore(sys.argv[1], max_bytes=None,"
        " max_age_seconds=None)\n"
        "        v = hashlib.sha256(item).hexdigest()[:12]\n"
        "        assert store.put(f'f{i}.js', item, algorithm='sha256', version=v)\n"
        "        found = store.find(f'f{i}.js', v, algorithm='sha256')\n"
        "        assert found is not None and found.data == item, i\n"
        "print('ok')\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder), str(start)],
            env=subprocess_env(DJANGO_SETTINGS_MODULE="tests.settings"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    start.touch()
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    store = VersionStore(str(folder), max_bytes=None, max_age_seconds=None)
    usage = store.usage()
    assert (usage.objects, usage.refs) == (8, 8)
    names = [path.name for path in files_under(folder)]
    assert not [name for name in names if name.startswith(versions.TEMPORARY_PREFIX)]
    for i in range(8):
        item = bytes([i]) * (512 * 1024 + i)
        found = store.find(f"f{i}.js", sha(item), algorithm="sha256")
        assert found is not None
        assert found.data == item


# -- corrupted entries -------------------------------------------------------------


def test_a_corrupted_version_is_never_served_and_is_dropped(
    store: VersionStore, caplog: Any
) -> None:
    data = b"console.log('the real one')"
    put(store, "a.js", data)
    object_path = Path(store.path, "objects", digest_of(data)[:2], digest_of(data)[2:])
    object_path.write_bytes(b"console.log('an evil one')"[: len(data)].ljust(len(data)))
    assert store.find("a.js", sha(data), algorithm="sha256") is None
    assert not object_path.exists()
    assert "corrupted" in caplog.text
    assert store.get(digest_of(data)) is None


def test_a_name_pointing_at_other_bytes_is_dropped(store: VersionStore) -> None:
    first, second = b"first version", b"second version"
    put(store, "a.js", first)
    put(store, "b.js", second)
    # Point a.js's name at b.js's bytes: they are not the version asked for.
    ref = ref_of(store, first)
    ref.write_text(digest_of(second))
    assert store.find("a.js", sha(first), algorithm="sha256") is None
    assert not ref.exists()
    assert store.find("b.js", sha(second), algorithm="sha256") is not None


@pytest.mark.parametrize(
    "content", [b"", b"not hex at all", b"../" * 30, b"\xff\xfe" * 40]
)
def test_a_garbled_name_finds_nothing(store: VersionStore, content: bytes) -> None:
    data = b"x" * 50
    put(store, "a.js", data)
    ref_of(store, data).write_bytes(content)
    assert store.find("a.js", sha(data), algorithm="sha256") is None


def test_a_symlink_in_the_store_is_never_followed(
    store: VersionStore, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP SECRET")
    object_path = Path(store.path, "objects", digest_of(b"TOP SECRET")[:2])
    object_path.mkdir(parents=True)
    (object_path / digest_of(b"TOP SECRET")[2:]).symlink_to(secret)
    assert store.get(digest_of(b"TOP SECRET")) is None


def test_a_version_removed_meanwhile_is_simply_missing(store: VersionStore) -> None:
    data = b"y" * 100
    put(store, "a.js", data)
    os.unlink(Path(store.path, "objects", digest_of(data)[:2], digest_of(data)[2:]))
    assert store.find("a.js", sha(data), algorithm="sha256") is None
    assert store.usage().refs == 0  # the name of a version gone is dropped


# -- bounds ------------------------------------------------------------------------


def test_prune_removes_what_was_not_used_for_max_age(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path), max_bytes=None, max_age_seconds=DAY_SECONDS)
    old, recent = b"old" * 100, b"recent" * 100
    put(store, "old.js", old)
    put(store, "recent.js", recent)
    old_files = [
        path
        for path in files_under(tmp_path)
        if digest_of(old)[2:] in path.name
        or path.read_bytes() == digest_of(old).encode()
    ]
    assert len(old_files) == 2  # its bytes, and its name
    for path in old_files:
        age(path, 2 * DAY_SECONDS)
    store.prune()
    # (The prune the first write started may have run meanwhile: either
    # removed them.)
    assert [path for path in old_files if path.exists()] == []
    assert store.find("old.js", sha(old), algorithm="sha256") is None
    assert store.find("recent.js", sha(recent), algorithm="sha256") is not None


def test_prune_keeps_the_store_under_max_bytes_least_recently_used_first(
    tmp_path: Path,
) -> None:
    writer = VersionStore(str(tmp_path), max_bytes=None, max_age_seconds=None)
    items = [bytes([i]) * (200 * 1024) for i in range(8)]  # 1.6 MiB in all
    for i, item in enumerate(items):
        writer.put(f"f{i}.js", item, algorithm="sha256", version=sha(item))
        # Put in order, f0 the least recently used.
        for path in files_under(tmp_path / "objects"):
            if path.name == digest_of(item)[2:]:
                age(path, 1000 - i)
    # Using f0 makes it recent again.
    f0 = tmp_path / "objects" / digest_of(items[0])[:2] / digest_of(items[0])[2:]
    age(f0, 0)
    store = VersionStore(str(tmp_path), max_bytes=1024 * 1024, max_age_seconds=None)
    store.prune()
    assert store.usage().bytes <= 1024 * 1024
    kept = [
        i
        for i, item in enumerate(items)
        if store.find(f"f{i}.js", sha(item), algorithm="sha256") is not None
    ]
    assert 0 in kept
    assert 1 not in kept
    assert 2 not in kept
    assert max(kept) == 7


def test_a_store_over_its_bound_prunes_itself_after_writing(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path), max_bytes=2 * 1024 * 1024, max_age_seconds=None)
    for i in range(24):
        item = bytes([i]) * (200 * 1024)
        store.put(f"f{i}.js", item, algorithm="sha256", version=sha(item))
    wait_for(
        lambda: store.usage().bytes <= 2 * 1024 * 1024,
        timeout=60,
        message="the store to prune itself",
    )


def test_prune_removes_temporary_files_of_writers_that_died(
    store: VersionStore,
) -> None:
    put(store, "a.js", b"z" * 10)
    shard = next(Path(store.path, "objects").iterdir())
    dead = shard / f"{versions.TEMPORARY_PREFIX}123-dead"
    dead.write_bytes(b"half of a")
    age(dead, 2 * versions.TEMPORARY_MAX_AGE_SECONDS)
    writing = shard / f"{versions.TEMPORARY_PREFIX}456-writing"
    writing.write_bytes(b"still being written")
    store.prune()
    assert not dead.exists()
    assert writing.exists()


def test_prune_leaves_files_it_does_not_know_alone(store: VersionStore) -> None:
    put(store, "a.js", b"z" * 10)
    stranger = Path(store.path, "objects", "README")
    stranger.write_text("not ours")
    store.prune()
    assert stranger.exists()


# -- the setting -------------------------------------------------------------------


def test_the_store_is_off_by_default() -> None:
    assert conf.VERSIONS is None
    assert versions.store() is None


def test_a_path_alone_turns_the_store_on_with_default_bounds(tmp_path: Path) -> None:
    with override_settings(FRESHSTATIC={"VERSIONS": tmp_path}):
        assert VersionsSetting(str(tmp_path)) == conf.VERSIONS
        assert conf.VERSIONS.max_bytes == VERSIONS_MAX_BYTES_DEFAULT
        assert conf.VERSIONS.max_age_seconds == VERSIONS_MAX_AGE_DEFAULT_SECONDS
        store = versions.store()
        assert store is not None
        assert store.path == str(tmp_path)
        assert setting_errors() == []


@pytest.mark.parametrize(
    ("debug", "enabled", "on"),
    [
        (False, "auto", True),
        (True, "auto", False),
        (True, True, True),
        (False, False, False),
    ],
)
def test_the_store_is_on_in_production_when_configured(
    tmp_path: Path, debug: bool, enabled: object, on: bool
) -> None:
    with override_settings(
        DEBUG=debug,
        FRESHSTATIC={"VERSIONS": {"PATH": str(tmp_path), "ENABLED": enabled}},
    ):
        assert (versions.store() is not None) is on
        assert versions.configured_store() is not None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("relative/path", "absolute folder path"),
        (42, "absolute folder path"),
        ({"MAX_BYTES": 10}, "absolute folder path"),
        ({"PATH": "/srv/v", "MAX_BYTES": 10}, "['MAX_BYTES'] must be None or"),
        ({"PATH": "/srv/v", "MAX_AGE": "soon"}, "['MAX_AGE'] must be None or"),
        ({"PATH": "/srv/v", "MAX_SIZE": 1}, "did you mean 'MAX_AGE'"),
        ({"PATH": "/srv/v", "ENABLED": "maybe"}, "['ENABLED'] must be 'auto'"),
        ({"PATH": "/srv/v", "DELTAS": "maybe"}, "['DELTAS'] must be 'auto'"),
    ],
)
def test_a_bad_versions_setting_is_reported(value: object, problem: str) -> None:
    with override_settings(FRESHSTATIC={"VERSIONS": value}):
        (error,) = setting_errors()
        assert problem in error
        ids = [message.id for message in run_checks(tags=["staticfiles"])]
        assert "freshstatic.E006" in ids


def test_a_bound_out_of_range_is_clamped() -> None:
    with override_settings(
        FRESHSTATIC={"VERSIONS": {"PATH": "/srv/v", "MAX_BYTES": 10, "MAX_AGE": 1}}
    ):
        assert conf.VERSIONS is not None
        assert conf.VERSIONS.max_bytes == 1024 * 1024
        assert conf.VERSIONS.max_age_seconds == 60


# -- checks and the command --------------------------------------------------------


def check_ids() -> list[str]:
    return [str(message.id) for message in run_checks(tags=["staticfiles"])]


def test_an_unwritable_store_is_an_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the store's parent should be")
    with override_settings(FRESHSTATIC={"VERSIONS": str(not_a_folder / "versions")}):
        assert "freshstatic.E008" in check_ids()
    with override_settings(FRESHSTATIC={"VERSIONS": str(tmp_path / "versions")}):
        assert "freshstatic.E008" not in check_ids()
        assert (tmp_path / "versions").is_dir()
        assert list((tmp_path / "versions").iterdir()) == []


def test_an_unbounded_store_is_a_warning(tmp_path: Path) -> None:
    unbounded = {"PATH": str(tmp_path), "MAX_BYTES": None}
    with override_settings(FRESHSTATIC={"VERSIONS": unbounded}):
        assert check_ids() == ["freshstatic.W010"]
    larger_than_the_disk = {"PATH": str(tmp_path), "MAX_BYTES": 1024**4}
    with override_settings(FRESHSTATIC={"VERSIONS": larger_than_the_disk}):
        assert check_ids() == ["freshstatic.W010"]
    with override_settings(FRESHSTATIC={"VERSIONS": str(tmp_path)}):
        assert check_ids() == []


def test_hashstatic_prune_versions(tmp_path: Path) -> None:
    store = VersionStore(str(tmp_path), max_bytes=None, max_age_seconds=None)
    old, recent = b"old" * 1000, b"recent" * 1000
    put(store, "old.js", old)
    put(store, "recent.js", recent)
    for path in files_under(tmp_path):
        if path.name == digest_of(old)[2:]:
            age(path, 2 * DAY_SECONDS)
    setting = {"PATH": str(tmp_path), "MAX_AGE": DAY_SECONDS}
    out = StringIO()
    with override_settings(FRESHSTATIC={"VERSIONS": setting}):
        call_command("hashstatic", "--prune-versions", stdout=out)
    assert "removed 2 files" in out.getvalue()
    assert store.get(digest_of(old)) is None
    assert store.get(digest_of(recent)) == recent


def test_hashstatic_prune_versions_without_a_store() -> None:
    with pytest.raises(CommandError, match="FRESHSTATIC\\['VERSIONS'\\]"):
        call_command("hashstatic", "--prune-versions")


# -- what the middleware serves from it --------------------------------------------


@pytest.fixture
def served(static_tree: StaticTree, tmp_path: Path) -> Iterator[StaticTree]:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        FRESHSTATIC={"VERSIONS": str(tmp_path / "versions")},
    ):
        yield static_tree


def get(path: str, **headers: str) -> Any:
    return Client().get(path, headers=headers)


def test_an_older_version_served_once_stays_reachable(served: StaticTree) -> None:
    served.write("js/app.js", b"console.log('one')")
    old_url = FreshStaticFilesStorage().url("js/app.js")
    assert get(old_url).content == b"console.log('one')"
    served.write("js/app.js", b"console.log('two, longer')")
    response = get(old_url)
    assert response.content == b"console.log('one')"
    assert response["Cache-Control"] == IMMUTABLE
    assert response["ETag"] == '"{}"'.format(digest_of(b"console.log('one')")[:32])
    current = get("/static/js/app.js")
    assert current.content == b"console.log('two, longer')"
    assert current["Cache-Control"] == "no-cache"


def test_an_older_version_is_compressed_as_usual(served: StaticTree) -> None:
    import zstandard

    old = b"body { color: blue }\n" * 200
    served.write("css/site.css", old)
    old_url = FreshStaticFilesStorage().url("css/site.css")
    get(old_url)
    served.write("css/site.css", b"body { color: red }\n" * 200)
    response = get(old_url, accept_encoding="zstd")
    assert response["Content-Encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompress(response.content) == old
    assert response["Cache-Control"] == IMMUTABLE


def test_a_version_never_stored_keeps_todays_behaviour(served: StaticTree) -> None:
    served.write("js/app.js", b"console.log('one')")
    old_url = FreshStaticFilesStorage().url("js/app.js")  # never served
    served.write("js/app.js", b"console.log('two')")
    response = get(old_url)
    assert response.content == b"console.log('two')"
    assert response["Cache-Control"] == "no-cache"


def test_a_deleted_file_still_serves_its_stored_versions(served: StaticTree) -> None:
    path = served.write("js/gone.js", b"console.log('soon gone')")
    url = FreshStaticFilesStorage().url("js/gone.js")
    get(url)
    path.unlink()
    response = get(url)
    assert response.status_code == 200
    assert response.content == b"console.log('soon gone')"
    assert get("/static/js/gone.js").status_code == 404


def test_with_the_store_off_older_versions_are_not_kept(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        DEBUG=True,
        FRESHSTATIC={"VERSIONS": str(tmp_path / "versions"), "LIVE": False},
    ):
        static_tree.write("js/app.js", b"console.log('one')")
        old_url = FreshStaticFilesStorage().url("js/app.js")
        get(old_url)
        static_tree.write("js/app.js", b"console.log('two')")
        assert get(old_url).content == b"console.log('two')"
    assert not (tmp_path / "versions").exists()


def test_an_older_version_of_a_module_stays_reachable(served: StaticTree) -> None:
    one = b'import "./util.js";\nconsole.log("one");\n'
    served.write("js/app.js", one)
    served.write("js/util.js", b"export const u = 1;\n")
    storage = FreshStaticFilesStorage()
    old_url = storage.url("js/app.js")
    assert old_url != f"/static/js/app.js?v={sha(one)}"  # covers util.js too
    assert get(old_url)["Cache-Control"] == IMMUTABLE
    # An edit to what it imports gives it a new version, its bytes the same.
    served.write("js/util.js", b"export const u = 2;\n")
    freshstatic.invalidate()
    new_url = storage.url("js/app.js")
    assert new_url != old_url
    for url in (old_url, new_url):
        response = get(url)
        assert response.content == one
        assert response["Cache-Control"] == IMMUTABLE
    # And after an edit to its own bytes, the old version is still those.
    served.write("js/app.js", b'import "./util.js";\nconsole.log("two");\n')
    freshstatic.invalidate()
    response = get(old_url)
    assert response.content == one
    assert response["Cache-Control"] == IMMUTABLE
    assert response["ETag"].startswith(f'"{old_url[-12:]}')


def test_a_module_known_from_the_shared_cache_is_kept_under_its_version(
    served: StaticTree,
) -> None:
    served.write("js/app.js", b'import "./util.js";\n')
    served.write("js/util.js", b"export const u = 1;\n")
    storage = storages["staticfiles"]  # the middleware's
    url = storage.url("js/app.js")
    # As in another process: nothing kept in memory, the digest found in the
    # shared cache; what the version covers is found anew when it is served.
    served_module.forget_versions()
    freshcache.expire_all()
    assert storage.url("js/app.js") == url
    response = get(url)
    assert response.content == b'import "./util.js";\n'
    assert response["Cache-Control"] == IMMUTABLE
    store = versions.store()
    assert store is not None
    assert store.find("js/app.js", url[-12:], algorithm="sha256") is not None
