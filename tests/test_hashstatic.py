from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import override_settings

import freshstatic.storage
from freshstatic.storage import FreshStaticFilesStorage
from tests.utils import (
    APP_CSS_BYTES,
    PACKAGE_STATIC_NAMES,
    RedisServer,
    StaticTree,
    package_static_urls,
    sha,
)


def run(*args: str, tty: bool = False) -> tuple[str, str]:
    out, err = TtyIO() if tty else StringIO(), StringIO()
    call_command("hashstatic", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TtyIO(StringIO):
    def isatty(self) -> bool:
        return True


def test_names_print_hashed_urls(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    static_tree.write("vendor/b.js", b"b")
    out, err = run("a.css", "vendor/b.js")
    assert out.splitlines() == [
        f"a.css: /static/a.css?v={sha(b'a')}",
        f"vendor/b.js: /static/vendor/b.js?v={sha(b'b')}",
    ]
    assert err == ""


def test_unknown_name_is_a_clear_error(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    err = StringIO()
    with pytest.raises(CommandError, match="1 of 2 names could not be found"):
        call_command("hashstatic", "a.css", "nope.css", stdout=StringIO(), stderr=err)
    assert "No matching file found for 'nope.css'." in err.getvalue()


@pytest.mark.parametrize("name", ["../settings.py", "/etc/passwd"])
def test_escaping_name_is_not_found(static_tree: StaticTree, name: str) -> None:
    with pytest.raises(CommandError, match="could not be found"):
        run(name)


def test_no_arguments_is_an_error() -> None:
    with pytest.raises(CommandError, match="Name at least one static file"):
        run()


def test_all_hashes_every_file(static_tree: StaticTree) -> None:
    for index in range(30):
        static_tree.write(f"many/{index}.css", f"{index}".encode())
    out, _ = run("--all")
    # No progress bar when the output is not a terminal.
    assert "\r" not in out
    assert "[" not in out
    # 30, the test app's stylesheet and the package's own files.
    assert out.startswith(f"Hashed {31 + len(PACKAGE_STATIC_NAMES)} static files in ")


@pytest.mark.redis
def test_all_warms_the_shared_cache(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    for index in range(30):
        static_tree.write(f"many/{index}.css", f"{index}".encode())
    entries = int(redis_cache.command("DBSIZE"))
    out, err = run("--rotate", "--all")
    hashed = 31 + len(PACKAGE_STATIC_NAMES)
    assert out.splitlines()[1].startswith(f"Hashed {hashed} static files in ")
    # A hash for each file, where every process sharing the cache finds it.
    assert int(redis_cache.command("DBSIZE")) >= entries + hashed
    assert err == ""  # a shared cache: no freshstatic.W006


def test_all_shows_a_progress_bar_on_a_terminal(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    out, _ = run("--all", tty=True)
    done = 2 + len(PACKAGE_STATIC_NAMES)
    assert "\r[" in out
    assert f"] {done}/{done}" in out
    # A second run finds every hash in the cache and still completes the bar.
    out, _ = run("--all", tty=True)
    assert f"] {done}/{done}" in out


def test_json_manifest_of_everything(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    static_tree.write("vendor/b.js", b"b")
    out, _ = run("--json")
    assert json.loads(out) == {
        "a.css": f"/static/a.css?v={sha(b'a')}",
        "vendor/b.js": f"/static/vendor/b.js?v={sha(b'b')}",
        "testapp/css/app.css": f"/static/testapp/css/app.css?v={sha(APP_CSS_BYTES)}",
        **package_static_urls(),
    }


def test_json_manifest_of_names(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    out, _ = run("--json", "a.css")
    assert json.loads(out) == {"a.css": f"/static/a.css?v={sha(b'a')}"}


def test_rotate_invalidates_every_hash(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"old")
    storage = FreshStaticFilesStorage()
    assert storage.url("a.css") == f"/static/a.css?v={sha(b'old')}"
    generation = caches["default"].get("freshstatic:generation")
    static_tree.write("a.css", b"new")
    out, _ = run("--rotate")
    assert "Rotated" in out
    assert caches["default"].get("freshstatic:generation") != generation
    assert storage.url("a.css") == f"/static/a.css?v={sha(b'new')}"


def test_rotate_then_all(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    out, _ = run("--rotate", "--all")
    assert out.splitlines()[0].startswith("Rotated")
    assert out.splitlines()[1].startswith(
        f"Hashed {2 + len(PACKAGE_STATIC_NAMES)} static files"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--rotate",),
        ("--all",),
        ("--rotate", "--all"),
        ("--rotate", "a.css"),
    ],
)
def test_a_per_process_cache_is_reported_where_it_matters(
    static_tree: StaticTree, args: tuple[str, ...]
) -> None:
    static_tree.write("a.css", b"a")
    _, err = run(*args)
    assert "(freshstatic.W006) The cache alias 'default' is per-process" in err
    assert "your servers are not affected" in err


def test_rotate_with_json_prints_only_the_manifest(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    out, err = run("--rotate", "--json", "a.css")
    assert json.loads(out) == {"a.css": f"/static/a.css?v={sha(b'a')}"}
    assert "freshstatic.W006" in err


@pytest.mark.parametrize("args", [("--rotate",), ("--all",)])
def test_rotate_or_warm_up_without_the_cache_is_a_clear_error(
    args: tuple[str, ...],
) -> None:
    locmem = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    with (
        override_settings(CACHES={"other": locmem}),
        pytest.raises(CommandError, match=r"'default' .*cache_alias is not in CACHES"),
    ):
        run(*args)


@pytest.mark.parametrize("args", [("a.css",), ("--json",), ("--all", "--json")])
def test_no_warning_when_only_urls_are_asked_for(
    static_tree: StaticTree, args: tuple[str, ...]
) -> None:
    static_tree.write("a.css", b"a")
    _, err = run(*args)
    assert err == ""


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    (tmp_path / "only.css").write_bytes(b"one")
    with override_settings(
        STATICFILES_FINDERS=["django.contrib.staticfiles.finders.FileSystemFinder"],
        STATICFILES_DIRS=[str(tmp_path)],
    ):
        out, _ = run("--all")
    assert out.startswith("Hashed 1 static file in ")
    with pytest.raises(CommandError, match=r"^1 of 1 name could not be found\.$"):
        run("nope.css")


@pytest.mark.parametrize(
    ("command", "args"), [("hashstatic", ("a.css",)), ("watchstatic", ())]
)
def test_commands_refuse_a_storage_that_is_not_freshstatic(
    command: str, args: tuple[str, ...]
) -> None:
    with (
        override_settings(
            STORAGES={
                "staticfiles": {
                    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
                }
            }
        ),
        pytest.raises(
            CommandError,
            match=r"not a freshstatic storage "
            r"\(django\.contrib\.staticfiles\.storage\.StaticFilesStorage\)",
        ),
    ):
        call_command(command, *args, stdout=StringIO(), stderr=StringIO())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_all_never_reads_a_symlink_out_of_the_roots(
    static_tree: StaticTree,
    tmp_path: Path,
    opened_paths: list[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: str,
) -> None:
    monkeypatch.setattr(freshstatic.storage, "FORK_MIN_NAMES", 2)
    static_tree.write("a.css", b"a")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.css").write_bytes(b"secret too")
    os.symlink(secret, static_tree.plain / "link.css")
    os.symlink(elsewhere, static_tree.plain / "linked")
    opened_paths.clear()
    with pytest.raises(CommandError, match=r"^2 of \d+ names could not be found"):
        run("--all", f"--workers={workers}")
    outside = {str(secret), str(elsewhere / "b.css")}
    assert [path for path in opened_paths if os.path.realpath(path) in outside] == []
    out, _ = run("--json", "a.css")
    assert json.loads(out) == {"a.css": f"/static/a.css?v={sha(b'a')}"}
