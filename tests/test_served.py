"""The bytes served for a name and their hash (freshstatic.served)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

import pytest
from django.test import Client, override_settings

from freshstatic import css, log, served
from freshstatic.served import Version, VersionCache
from freshstatic.storage import FreshStaticFilesStorage
from tests.utils import StaticTree, sha, wait_for

SERVING = override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"])


@pytest.fixture
def serving(static_tree: StaticTree) -> StaticTree:
    with SERVING:
        yield static_tree


def version(name: str, body: bytes) -> Version:
    return Version(name, f"/{name}", (1, 2, 3, 4, 5), "0" * 64, body=body)


def test_the_version_cache_is_bounded_in_bytes_least_recent_out() -> None:
    one, two, three = (version(n, b"x" * 1000) for n in ("one", "two", "three"))
    cache = VersionCache(max_bytes=one.cost() * 2 + 10)
    cache.put(("one",), one)
    cache.put(("two",), two)
    assert cache.get(("one",)) is one  # now the most recent
    cache.put(("three",), three)
    assert cache.get(("two",)) is None
    assert cache.get(("one",)) is one
    assert cache.get(("three",)) is three
    assert cache.bytes <= cache.max_bytes


def test_one_version_per_name_is_kept() -> None:
    cache = VersionCache(max_bytes=10**6)
    for edit in range(50):
        cache.put(("site.css",), version("site.css", b"y" * 1000 + bytes([edit])))
    assert len(cache) == 1
    assert cache.bytes == version("site.css", b"y" * 1001).cost()


def test_a_version_bigger_than_the_cache_is_not_kept() -> None:
    cache = VersionCache(max_bytes=500)
    cache.put(("small",), version("small", b""))
    cache.put(("big",), version("big", b"z" * 1000))
    assert cache.get(("big",)) is None
    assert cache.get(("small",)) is not None


def test_an_import_chain_of_any_depth_ends_with_a_clear_warning(
    serving: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    depth = 400
    for index in range(depth):
        serving.write(f"chain/{index}.css", f'@import "{index + 1}.css";'.encode())
    serving.write(f"chain/{depth}.css", b".end{}")
    storage = FreshStaticFilesStorage()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        url = storage.url("chain/0.css")
    assert "?v=" in url
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert f"more than {served.MAX_STYLESHEET_DEPTH} stylesheets deep" in warnings[0]
    # The end of the chain is as deep as versioning goes: its own reference
    # is left as it is, everything above it carries a hash.
    body = Client().get(url).content.decode()
    assert body.startswith('@import "1.css?v=')


def test_a_cycle_ends_where_it_closes(serving: StaticTree) -> None:
    serving.write("a.css", b'@import "b.css"; .a{}')
    serving.write("b.css", b'@import "a.css"; @import "b.css"; .b{}')
    storage = FreshStaticFilesStorage()
    body = Client().get(storage.url("a.css")).content.decode()
    assert body.startswith('@import "b.css?v=')


def test_concurrent_first_requests_build_a_stylesheet_once(
    serving: StaticTree,
    monkeypatch: pytest.MonkeyPatch,
    opened_paths: list[str],
) -> None:
    path = serving.write("big.css", b".a{background:url(i.png)}\n" * 20_000)
    serving.write("i.png", b"i")
    rewrite = css.rewrite
    release = threading.Event()
    builds: list[str] = []

    def slow_rewrite(text: str, replace: Callable[[str], str]) -> str:
        builds.append(text[:2])
        release.wait(60)
        return rewrite(text, replace)

    monkeypatch.setattr(css, "rewrite", slow_rewrite)
    storage = FreshStaticFilesStorage()
    bodies: list[bytes | None] = []

    def request() -> None:
        opened = storage.served_files.open("big.css", "generation")
        assert opened is not None
        bodies.append(opened.body)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: opened_paths.count(str(path)) >= 4, timeout=60)
    release.set()
    for thread in threads:
        thread.join(60)
    assert len(bodies) == 4
    assert len(builds) == 1
    assert all(body is bodies[0] for body in bodies)


@pytest.mark.parametrize(
    "name", [".env", ".git/config", "css/.secret.css", "CVS", "css/site.css~"]
)
def test_dotfiles_and_ignored_files_are_never_hashed_or_served(
    serving: StaticTree, name: str
) -> None:
    serving.write(name, b"SECRET=1")
    storage = FreshStaticFilesStorage()
    assert "?v=" not in storage.url(name)
    response = Client().get(f"/static/{name}")
    assert response.status_code == 404
    assert b"SECRET" not in response.content


def test_a_stylesheet_too_big_to_rewrite_is_served_as_it_is(
    serving: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(served, "STYLESHEET_MAX_BYTES", 100)
    raw = b".a{background:url(i.png)}" * 10
    serving.write("huge.css", raw)
    serving.write("i.png", b"i")
    storage = FreshStaticFilesStorage()
    url = storage.url("huge.css")
    assert url == f"/static/huge.css?v={sha(raw)}"
    response = Client().get(url)
    assert response.content == raw
    assert "immutable" in response["Cache-Control"]


def test_a_bad_path_asked_for_again_and_again_is_logged_once(
    serving: StaticTree, caplog: pytest.LogCaptureFixture, tmp_path_factory
) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path_factory.mktemp("outside") / "secret.css"
    outside.write_bytes(b"secret")
    (serving.plain / "link.css").symlink_to(outside)
    (serving.plain / "folder").mkdir()
    client = Client()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        for _ in range(200):
            assert client.get("/static/link.css").status_code == 404
            assert client.get("/static/folder").status_code == 404
    ours = [record for record in caplog.records if record.name == "freshstatic"]
    assert len(ours) == 1
    assert "outside the static locations" in ours[0].getMessage()


def test_warnings_about_endless_distinct_names_are_bounded(
    static_tree: StaticTree,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(log, "WARNED_MAX_BYTES", 10 * 150)
    storage = FreshStaticFilesStorage()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        for index in range(1000):
            storage.url(f"missing/{index:04}.css")
    messages = [record.getMessage() for record in caplog.records]
    # About ten names fit the budget; then one summary a minute.
    assert 5 <= len(messages) <= 15
    assert "more problems with static files were not logged" in messages[-1]


def test_the_digest_of_a_raw_file_is_of_its_bytes(static_tree: StaticTree) -> None:
    static_tree.write("app.js", b"console.log(1)")
    storage = FreshStaticFilesStorage()
    found = storage.served_files.version("app.js", None)
    assert found is not None
    assert found.digest == hashlib.sha256(b"console.log(1)").hexdigest()
    assert not found.rewritten
    assert found.dependencies == ()


def test_the_file_on_disk_is_none_for_what_is_not_served(
    static_tree: StaticTree,
) -> None:
    static_tree.write("a.css", b"a")
    static_tree.write(".env", b"SECRET=1")
    (static_tree.plain / "folder.css").mkdir()
    files = FreshStaticFilesStorage().served_files
    digest, info = files.on_disk("a.css") or ("", None)
    assert digest == hashlib.sha256(b"a").hexdigest()
    assert info is not None
    assert files.on_disk("missing.css") is None
    assert files.on_disk(".env") is None
    assert files.on_disk("folder.css") is None


def test_a_name_whose_file_moved_to_another_root_is_found_again(
    static_tree: StaticTree,
) -> None:
    first = static_tree.write("moved.js", b"first root")
    storage = FreshStaticFilesStorage()
    files = storage.served_files
    opened = files.open("moved.js", "generation")
    assert opened is not None
    assert opened.read() == b"first root"
    # Gone from the first root, now in the prefixed one under the same name
    # (the generation, and so the remembered resolution, unchanged).
    first.unlink()
    with override_settings(
        STATICFILES_DIRS=[str(static_tree.plain), str(static_tree.prefixed)]
    ):
        (static_tree.prefixed / "moved.js").write_bytes(b"second root")
        again = files.open("moved.js", "generation")
        assert again is not None
        assert again.read() == b"second root"
        again.close()
    first.write_bytes(b"back")
    assert files.open("missing-now.js", "generation") is None
