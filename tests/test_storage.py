from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import django
import pytest
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, Storage, StorageHandler, storages
from django.template import Context, Template
from django.test import override_settings

import freshstatic
import freshstatic.storage
from freshstatic import locations
from freshstatic.storage import FreshStaticFilesStorage, FreshStaticMixin
from tests.utils import RedisServer, StaticTree, run_python, sha

APP_CSS = Path(__file__).parent / "testapp" / "static" / "testapp" / "css" / "app.css"


def render(source: str) -> str:
    return Template("{% load static %}" + source).render(Context())


@pytest.mark.parametrize("debug", [True, False])
def test_static_tag_carries_content_hash_for_every_kind_of_location(
    static_tree: StaticTree, debug: bool
) -> None:
    static_tree.write("css/site.css", b"body { color: red }")
    static_tree.write("vendor/lib.js", b"console.log(1)")
    with override_settings(DEBUG=debug):
        html = render(
            '{% static "css/site.css" %} {% static "vendor/lib.js" %} '
            '{% static "testapp/css/app.css" %}'
        )
    assert html.split() == [
        f"/static/css/site.css?v={sha(b'body { color: red }')}",
        f"/static/vendor/lib.js?v={sha(b'console.log(1)')}",
        f"/static/testapp/css/app.css?v={sha(APP_CSS.read_bytes())}",
    ]


def test_url_changes_after_edit_and_invalidate(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"old")
    storage = FreshStaticFilesStorage()
    assert storage.url("a.css") == f"/static/a.css?v={sha(b'old')}"
    static_tree.write("a.css", b"new")
    freshstatic.invalidate(["a.css"])
    assert storage.url("a.css") == f"/static/a.css?v={sha(b'new')}"


def test_warm_url_is_memoised_without_touching_the_file(
    static_tree: StaticTree,
) -> None:
    path = static_tree.write("a.css", b"content")
    storage = FreshStaticFilesStorage()
    first = storage.url("a.css")
    path.unlink()  # a cold call would now find nothing
    assert storage.url("a.css") == first == f"/static/a.css?v={sha(b'content')}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("icons.svg#logo", "/static/icons.svg?v={h}#logo"),
        ("icons.svg?x=1#i", "/static/icons.svg?x=1&v={h}#i"),
        ("icons.svg?x=1", "/static/icons.svg?x=1&v={h}"),
        ("icons.svg#", "/static/icons.svg?v={h}#"),
    ],
)
def test_query_string_is_kept_and_fragment_goes_last(
    static_tree: StaticTree, name: str, expected: str
) -> None:
    static_tree.write("icons.svg", b"<svg/>")
    assert FreshStaticFilesStorage().url(name) == expected.format(h=sha(b"<svg/>"))


def test_parent_query_string_is_merged() -> None:
    class Parent(InMemoryStorage):
        def url(self, name: str | None) -> str:
            return f"https://cdn.example/{name}?sig=abc"

    class Fresh(FreshStaticMixin, Parent):
        pass

    storage = Fresh()
    storage.save("a.js", ContentFile(b"js"))
    assert storage.url("a.js#x") == f"https://cdn.example/a.js?sig=abc&v={sha(b'js')}#x"


def test_storage_own_copy_wins_over_finders(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    static_tree.write("a.css", b"source")
    root = tmp_path / "collected"
    (root).mkdir()
    (root / "a.css").write_bytes(b"collected")
    with override_settings(STATIC_ROOT=str(root)):
        storage = storages["staticfiles"]
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'collected')}"
        # A file only the finders have still gets its hash.
        static_tree.write("b.css", b"only-source")
        assert storage.url("b.css") == f"/static/b.css?v={sha(b'only-source')}"


def test_first_finder_match_wins(static_tree: StaticTree, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    (second / "a.css").write_bytes(b"second")
    static_tree.write("a.css", b"first")
    with override_settings(STATICFILES_DIRS=[str(static_tree.plain), str(second)]):
        assert (
            FreshStaticFilesStorage().url("a.css") == f"/static/a.css?v={sha(b'first')}"
        )


def test_remote_storage_hashes_its_own_copy() -> None:
    class RemoteFresh(FreshStaticMixin, InMemoryStorage):
        pass

    storage = RemoteFresh(base_url="https://cdn.example/")
    png = b"\x89PNG"
    storage.save("img/logo.png", ContentFile(png))
    assert (
        storage.url("img/logo.png") == f"https://cdn.example/img/logo.png?v={sha(png)}"
    )
    # Not in the storage: the finders' match is hashed, as documented.
    assert storage.url("testapp/css/app.css") == (
        f"https://cdn.example/testapp/css/app.css?v={sha(APP_CSS.read_bytes())}"
    )
    assert storage.url("nowhere.css") == "https://cdn.example/nowhere.css"


def test_storage_without_local_paths_reads_through_open() -> None:
    class BucketStorage(Storage):
        """Like S3: files behind open() and exists(), no local path()."""

        files: ClassVar[dict[str, bytes]] = {"app.js": b"remote"}

        def exists(self, name: str) -> bool:
            return name in self.files

        def _open(self, name: str, mode: str = "rb") -> ContentFile[bytes]:
            return ContentFile(self.files[name], name=name)

        def url(self, name: str | None) -> str:
            return f"https://bucket.example/{name}"

    class FreshBucket(FreshStaticMixin, BucketStorage):
        pass

    storage = FreshBucket()
    assert storage.url("app.js") == f"https://bucket.example/app.js?v={sha(b'remote')}"


def test_folder_in_static_root_falls_back_to_the_finders(
    static_tree: StaticTree, tmp_path: Path
) -> None:
    static_tree.write("odd.css", b"file")
    (tmp_path / "collected" / "odd.css").mkdir(parents=True)
    with override_settings(STATIC_ROOT=str(tmp_path / "collected")):
        assert (
            storages["staticfiles"].url("odd.css")
            == f"/static/odd.css?v={sha(b'file')}"
        )


def test_memo_is_bounded_in_bytes(
    static_tree: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshstatic import cache

    static_tree.write("a.css", b"a")
    static_tree.write("b.css", b"b")
    storage = FreshStaticFilesStorage()
    a_url = storage.url("a.css")
    monkeypatch.setattr(cache, "MEMO_MAX_BYTES", storage.hash_cache.state.memo_bytes)
    assert storage.url("b.css") == f"/static/b.css?v={sha(b'b')}"
    assert storage.hash_cache.state.memo == {"a.css": a_url}


def test_odd_names_share_a_small_budget_and_never_evict_files(
    static_tree: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshstatic import cache

    static_tree.write("a.css", b"a")
    storage = FreshStaticFilesStorage()
    a_url = storage.url("a.css")
    monkeypatch.setattr(cache, "ODD_MEMO_MAX_BYTES", 10_000)
    for index in range(1000):  # user input passed to static(): endless names
        storage.url(f"missing/{index}-{'x' * 100}.css")
        storage.url(f"a.css?{index}")
        storage.url(f"./a.css#{index}")
    state = storage.hash_cache.state
    assert state.odd_bytes <= 10_000
    assert state.memo == {"a.css": a_url}
    assert storage.url("a.css?1") == f"/static/a.css?1&v={sha(b'a')}"


def test_missing_file_gives_plain_url_and_one_log_line(
    static_tree: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FreshStaticFilesStorage()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        assert storage.url("nope.css") == "/static/nope.css"
        freshstatic.invalidate()
        assert storage.url("nope.css") == "/static/nope.css"
    messages = [r.getMessage() for r in caplog.records if "nope.css" in r.getMessage()]
    assert len(messages) == 1
    assert "could not be found" in messages[0]


def test_missing_file_is_hashed_once_created(static_tree: StaticTree) -> None:
    storage = FreshStaticFilesStorage()
    assert storage.url("late.css") == "/static/late.css"
    static_tree.write("late.css", b"late")
    freshstatic.invalidate(["late.css"])
    assert storage.url("late.css") == f"/static/late.css?v={sha(b'late')}"


def test_strict_option_raises_django_value_error(static_tree: StaticTree) -> None:
    storage = FreshStaticFilesStorage(strict=True)
    with pytest.raises(ValueError, match="could not be found"):
        storage.url("nope.css")


def test_strict_setting_raises_unless_the_storage_says_otherwise(
    static_tree: StaticTree,
) -> None:
    with override_settings(FRESHSTATIC={"STRICT": True}):
        with pytest.raises(ValueError, match="could not be found"):
            FreshStaticFilesStorage().url("nope.css")
        assert (
            FreshStaticFilesStorage(strict=False).url("nope.css") == "/static/nope.css"
        )


@pytest.mark.parametrize(
    "name",
    [
        "../secret.txt",
        "a/../../secret.txt",
        "/etc/passwd",
        "css/\x00.css",
        "..\\secret.txt",
        "..",
    ],
)
def test_names_escaping_the_static_roots_are_never_read(
    static_tree: StaticTree, name: str, opened_paths: list[str]
) -> None:
    (static_tree.base / "secret.txt").write_bytes(b"secret")
    (static_tree.plain / "a").mkdir()
    opened_paths.clear()
    url = FreshStaticFilesStorage().url(name)
    assert "v=" not in url
    assert not [path for path in opened_paths if "secret" in path or "passwd" in path]


def test_symlink_out_of_the_roots_is_never_read(
    static_tree: StaticTree, opened_paths: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    outside = static_tree.base / "outside.txt"
    outside.write_bytes(b"private")
    os.symlink(outside, static_tree.plain / "link.css")
    opened_paths.clear()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        assert FreshStaticFilesStorage().url("link.css") == "/static/link.css"
    assert str(outside) not in opened_paths
    assert "outside the static locations" in caplog.text


def test_symlink_between_static_roots_is_followed(static_tree: StaticTree) -> None:
    target = static_tree.write("vendor/real.css", b"real")
    os.symlink(target, static_tree.plain / "alias.css")
    assert (
        FreshStaticFilesStorage().url("alias.css")
        == f"/static/alias.css?v={sha(b'real')}"
    )


def test_unreadable_file_gives_plain_url_and_warning(
    static_tree: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    path = static_tree.write("locked.css", b"x")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root ignores permissions: make it a directory
        path.chmod(0o644)
        path.unlink()
        (path / "inner").mkdir(parents=True)
        os.symlink(path, static_tree.plain / "dir.css")
        target = "dir.css"
    else:  # pragma: no cover (CI runs as root)
        target = "locked.css"
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        assert FreshStaticFilesStorage().url(target) == f"/static/{target}"
    assert target in caplog.text


def test_cache_failure_degrades_to_computing_the_hash(
    static_tree: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    static_tree.write("a.css", b"a")
    storage = FreshStaticFilesStorage(cache_alias="no-such-alias")
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'a')}"
    assert "'no-such-alias' is unavailable" in caplog.text


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"hash_algorithm": "md5"}, "/static/a.css?v={md5}"),
        ({"hash_length": 8}, "/static/a.css?v={sha8}"),
        ({"query_param": "h"}, "/static/a.css?h={sha12}"),
    ],
)
def test_storage_options(
    static_tree: StaticTree, options: dict[str, object], expected: str
) -> None:
    import hashlib

    static_tree.write("a.css", b"a")
    values = {
        "md5": hashlib.md5(b"a").hexdigest()[:12],
        "sha8": sha(b"a", 8),
        "sha12": sha(b"a"),
    }
    # Built from a STORAGES entry exactly as Django builds it. (Django 4.2's
    # override_settings(STORAGES=...) drops OPTIONS, so no override here.)
    handler = StorageHandler(
        {
            "staticfiles": {
                "BACKEND": "freshstatic.storage.FreshStaticFilesStorage",
                "OPTIONS": options,
            }
        }
    )
    assert handler["staticfiles"].url("a.css") == expected.format(**values)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hash_algorithm": "nope"}, "hash_algorithm 'nope'"),
        ({"hash_algorithm": "shake_128"}, "hash_algorithm 'shake_128'"),
        ({"hash_length": 2}, "hash_length must be an integer from 6 to 64"),
        ({"hash_length": 65}, "hash_length must be"),
        ({"key_prefix": "has space"}, "key_prefix must be"),
        ({"query_param": "a=b"}, "query_param must be"),
    ],
)
def test_bad_options_raise_improperly_configured(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        FreshStaticFilesStorage(**options)


@pytest.mark.subprocess
@pytest.mark.skipif(
    django.VERSION >= (5, 1), reason="STATICFILES_STORAGE was removed in 5.1"
)
def test_legacy_staticfiles_storage_setting(static_tree: StaticTree) -> None:
    """A settings module that still uses STATICFILES_STORAGE (Django 4.2)."""
    static_tree.write("a.css", b"legacy")
    script = (
        "import django; django.setup(); from django.template import Template, Context; "
        "print(Template('{% load static %}{% static \"a.css\" %}').render(Context()))"
    )
    result = run_python(
        ["-W", "ignore::DeprecationWarning", "-c", script],
        DJANGO_SETTINGS_MODULE="tests.settings_legacy",
        FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"/static/a.css?v={sha(b'legacy')}"


def test_non_string_name_goes_to_the_parent() -> None:
    assert FreshStaticFilesStorage().url(None) == StaticFilesStorage().url(None)  # type: ignore[arg-type]


def test_refuses_to_be_created_without_the_app() -> None:
    with (
        override_settings(INSTALLED_APPS=["django.contrib.staticfiles"]),
        pytest.raises(ImproperlyConfigured, match=r"\(freshstatic\.E001\)$"),
    ):
        FreshStaticFilesStorage()


@pytest.mark.parametrize(
    ("strict", "raises"), [("false", False), ("Off", False), ("On", True)]
)
def test_strict_is_read_as_users_write_it(
    static_tree: StaticTree, strict: str, raises: bool
) -> None:
    storage = FreshStaticFilesStorage(strict=strict)  # type: ignore[arg-type]
    if raises:
        with pytest.raises(ValueError, match="could not be found"):
            storage.url("missing.css")
    else:
        assert storage.url("missing.css") == "/static/missing.css"


def test_an_unreadable_strict_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="strict"):
        FreshStaticFilesStorage(strict="maybe")  # type: ignore[arg-type]


def test_algorithm_names_are_case_insensitive(static_tree: StaticTree) -> None:
    static_tree.write("a.css", b"a")
    storage = FreshStaticFilesStorage(hash_algorithm="SHA256")
    assert storage.url("a.css") == f"/static/a.css?v={sha(b'a')}"


def test_a_fifo_is_never_opened(static_tree: StaticTree) -> None:
    os.mkfifo(static_tree.plain / "pipe.css")  # opening it would block forever
    assert FreshStaticFilesStorage().url("pipe.css") == "/static/pipe.css"


def test_a_lone_surrogate_never_raises() -> None:
    assert FreshStaticFilesStorage().url("\ud800.css").startswith("/static/")


def test_single_storage_finders_are_static_roots(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "m.css").write_bytes(b"media")
    with override_settings(
        MEDIA_ROOT=str(media),
        STATICFILES_FINDERS=[
            "django.contrib.staticfiles.finders.FileSystemFinder",
            "django.contrib.staticfiles.finders.DefaultStorageFinder",
        ],
    ):
        assert (
            FreshStaticFilesStorage().url("m.css") == f"/static/m.css?v={sha(b'media')}"
        )


def many_files(static_tree: StaticTree, count: int) -> dict[str, bytes]:
    files = {f"d{index % 7}/f{index}.png": b"x" * index for index in range(count)}
    for name, data in files.items():
        static_tree.write(name, data)
    return files


def expected_digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: sha(data, 64) for name, data in files.items()}


# hash_names() forks only in a process with no other thread, which a test
# session is not once a test has left one: run it in a fresh process.
HASH_IN_PROCESSES = """
import json, os, pickle, sys, threading
import django
django.setup()
import freshstatic.storage
from freshstatic import locations
from freshstatic.storage import FreshStaticFilesStorage

freshstatic.storage.FORK_MIN_NAMES = 2
children = []
fork = os.fork
parent = os.getpid()

def counted():
    if sys.argv[1] == "refused":
        raise BlockingIOError(11, "Resource temporarily unavailable")
    pid = fork()
    if pid:
        children.append(pid)
    return pid

os.fork = counted
if sys.argv[1] == "failing":
    dump = pickle.dump

    def dump_in_parent_only(*args, **kwargs):
        if os.getpid() != parent:
            raise MemoryError  # the child dies before handing anything back
        dump(*args, **kwargs)

    pickle.dump = dump_in_parent_only
storage = FreshStaticFilesStorage()
listing = locations.list_files(storage)
done = []
digests = storage.hash_names(
    [*listing.paths, "missing.css"],
    workers=3,
    progress=done.append,
    paths=listing.paths,
    inodes=listing.inodes,
)
state = storage.hash_cache.refresh()
keys = {storage.served_files.shared_key(name, False): name for name in digests}
cached = storage.hash_cache.get_many(state, keys)
print(json.dumps({
    "threads": threading.active_count(),
    "children": len(children),
    "digests": digests,
    "done": sum(done),
    "cached": {keys[key]: digest for key, (digest, _files) in cached.items()},
}))
"""


def hash_in_processes(static_tree: StaticTree, mode: str, **env: str) -> dict[str, Any]:
    result = run_python(
        ["-c", HASH_IN_PROCESSES, mode],
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
        **env,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.subprocess
def test_hash_names_in_worker_processes(static_tree: StaticTree) -> None:
    files = many_files(static_tree, 40)
    report = hash_in_processes(static_tree, "ok")
    assert report["children"] == 2
    digests = report["digests"]
    assert {name: digests[name] for name in files} == expected_digests(files)
    assert digests["missing.css"] is None
    assert report["done"] == len(digests)
    # Into this process's cache, whichever process hashed them.
    cached = report["cached"]
    assert {name: cached[name] for name in files} == expected_digests(files)


@pytest.mark.redis
@pytest.mark.subprocess
def test_worker_processes_start_before_the_redis_listener(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    files = many_files(static_tree, 20)
    report = hash_in_processes(
        static_tree, "ok", FRESHSTATIC_TEST_REDIS=redis_cache.url
    )
    assert report["threads"] == 2  # this process listens for rotations
    assert report["children"] == 2
    cached = report["cached"]  # in Redis
    assert {name: cached[name] for name in files} == expected_digests(files)


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["failing", "refused"])
def test_a_worker_process_that_fails_or_cannot_start_is_made_up_for(
    static_tree: StaticTree, mode: str
) -> None:
    files = many_files(static_tree, 20)
    report = hash_in_processes(static_tree, mode)
    assert report["children"] == (2 if mode == "failing" else 0)
    digests = report["digests"]
    assert {name: digests[name] for name in files} == expected_digests(files)
    assert report["done"] == len(digests)


def test_hash_names_uses_threads_while_another_thread_runs(
    static_tree: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = many_files(static_tree, 20)
    monkeypatch.setattr(freshstatic.storage, "FORK_MIN_NAMES", 2)
    forks: list[int] = []
    monkeypatch.setattr(os, "fork", lambda: forks.append(1))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        digests = FreshStaticFilesStorage().hash_names(files, workers=2)
    finally:
        stop.set()
        other.join()
    assert forks == []
    assert digests == expected_digests(files)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_folder_swapped_for_a_symlink_after_the_listing_is_never_read(
    static_tree: StaticTree,
    tmp_path: Path,
    opened_paths: list[str],
    caplog: pytest.LogCaptureFixture,
    workers: int,
) -> None:
    static_tree.write("css/a.css", b"listed")
    static_tree.write("b.css", b"b")
    storage = FreshStaticFilesStorage()
    listing = locations.list_files(storage)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.css").write_bytes(b"secret")
    (static_tree.plain / "css").rename(tmp_path / "old-css")
    os.symlink(elsewhere, static_tree.plain / "css")
    opened_paths.clear()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        digests = storage.hash_names(
            listing.paths, workers=workers, paths=listing.paths, inodes=listing.inodes
        )
    assert digests["css/a.css"] is None
    assert digests["b.css"] == sha(b"b", 64)
    assert [path for path in opened_paths if "elsewhere" in path] == []
    assert "outside the static locations" in caplog.text
