"""The bytes served for a name and their hash (freshstatic.served)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
from collections.abc import Callable

import pytest
from django.core.files.storage import storages
from django.test import Client, override_settings

import freshstatic
from freshstatic import css, log, modules, served
from freshstatic.conf import conf, setting_errors
from freshstatic.served import Version, VersionCache
from freshstatic.storage import FreshStaticFilesStorage
from tests.utils import StaticTree, sha, wait_for

SERVING = override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"])
IMMUTABLE = "public, max-age=31536000, immutable"


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


# -- modules: a version covering what a module imports -------------------------------


def body_of(url: str) -> tuple[bytes, str]:
    response = Client().get(url)
    assert response.status_code == 200
    content = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    return content, response["Cache-Control"]


def test_an_edit_down_an_import_chain_changes_every_url_above_it(
    serving: StaticTree,
) -> None:
    serving.write("js/a.js", b'import "./b.js";\n')
    serving.write("js/b.js", b'export * from "./c.js";\n')
    serving.write("js/c.js", b"export const c = 1;\n")
    serving.write("js/other.js", b"export const other = 1;\n")
    storage = FreshStaticFilesStorage()
    names = ["js/a.js", "js/b.js", "js/c.js", "js/other.js"]
    before = {name: storage.url(name) for name in names}
    serving.write("js/c.js", b"export const c = 2;\n")
    freshstatic.invalidate()
    after = {name: storage.url(name) for name in names}
    assert [name for name in names if before[name] != after[name]] == names[:3]
    body, cache_control = body_of(after["js/a.js"])
    assert body == b'import "./b.js";\n'  # as it is
    assert cache_control == IMMUTABLE


def test_an_import_cycle_is_read_once_and_ends_where_it_closes(
    serving: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving.write("js/a.js", b'import "./b.js";\n')
    serving.write("js/b.js", b'import "./a.js";\nimport "./b.js";\n')
    scanned: list[str] = []
    imports = modules.imports

    def counted(text: str) -> list[str]:
        scanned.append(text)
        return imports(text)

    monkeypatch.setattr(modules, "imports", counted)
    with override_settings(FRESHSTATIC={"REWRITE_IMPORTS": True}):
        storage = storages["staticfiles"]  # the middleware's
        a_url = storage.url("js/a.js")
        b_url = storage.url("js/b.js")
        a_body, _cache_control = body_of(a_url)
        b_body, _cache_control = body_of(b_url)
    assert len(scanned) == 2  # each module read once
    # a.js covers b.js; b.js, built inside a.js's build, leaves the import
    # that closes the cycle (and its import of itself) as they are.
    assert a_body == f'import "./b.js?v={b_url[-12:]}";\n'.encode()
    assert b_body == b'import "./a.js";\nimport "./b.js";\n'
    assert b_url == f"/static/js/b.js?v={sha(b_body)}"
    assert a_url != f"/static/js/a.js?v={sha(a_body)}"


def test_an_import_of_a_missing_file_is_left_as_it_is_until_the_file_appears(
    serving: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    source = b'import "./later.js";\nimport "https://cdn.example/x.js";\nimport "x";\n'
    serving.write("js/app.js", source)
    storage = FreshStaticFilesStorage()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        before = storage.url("js/app.js")
        assert body_of(before) == (source, IMMUTABLE)
    # Nothing else covered: the hash of its bytes. One warning, for the
    # file; a URL and a bare specifier are the page's import map's business.
    assert before == f"/static/js/app.js?v={sha(source)}"
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == [
        "Module 'js/app.js' imports './later.js', which is not a static file; "
        "the import is left as it is."
    ]
    serving.write("js/later.js", b"export default 1;\n")
    freshstatic.invalidate()
    assert storage.url("js/app.js") != before


def test_a_module_larger_than_the_limit_keeps_the_hash_of_its_bytes(
    serving: StaticTree,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(served, "STYLESHEET_MAX_BYTES", 100)
    small = b'import "./util.js";\n'
    huge = small + b"// padding\n" * 10
    serving.write("js/huge.js", huge)
    serving.write("js/small.js", small)
    serving.write("js/util.js", b"export const u = 1;\n")
    storage = FreshStaticFilesStorage()
    with (
        override_settings(FRESHSTATIC={"REWRITE_IMPORTS": True}),
        caplog.at_level(logging.WARNING, logger="freshstatic"),
    ):
        url = storage.url("js/huge.js")
        assert url == f"/static/js/huge.js?v={sha(huge)}"
        assert body_of(url) == (huge, IMMUTABLE)  # not rewritten either
        assert storage.url("js/small.js") != f"/static/js/small.js?v={sha(small)}"
    assert [record.getMessage() for record in caplog.records] == [
        "Module 'js/huge.js' is larger than 100 bytes: its imports are not "
        "read, and its URL carries the hash of its bytes alone."
    ]


def test_an_import_chain_of_modules_of_any_depth_ends_with_a_warning(
    serving: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    depth = 100
    for index in range(depth):
        serving.write(f"chain/{index}.js", f'import "./{index + 1}.js";'.encode())
    serving.write(f"chain/{depth}.js", b"export {};")
    storage = FreshStaticFilesStorage()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        url = storage.url("chain/0.js")
    first = (serving.plain / "chain/0.js").read_bytes()
    assert url != f"/static/chain/0.js?v={sha(first)}"
    limit = served.MAX_STYLESHEET_DEPTH
    assert [record.getMessage() for record in caplog.records] == [
        f"Module 'chain/{limit - 1}.js' imports './{limit}.js' more than {limit} "
        f"modules deep; its URL does not cover that import."
    ]


@pytest.mark.parametrize(
    ("written", "rewritten"),
    [(True, True), ("true", True), ("false", False), ("0", False), (False, False)],
)
def test_rewrite_imports_as_written_in_settings(
    serving: StaticTree, written: object, rewritten: bool
) -> None:
    source = b'import "./util.js";\n'
    serving.write("js/app.js", source)
    serving.write("js/util.js", b"export const u = 1;\n")
    with override_settings(FRESHSTATIC={"REWRITE_IMPORTS": written}):
        assert conf.REWRITE_IMPORTS is rewritten
        assert setting_errors() == []
        body, _cache_control = body_of(FreshStaticFilesStorage().url("js/app.js"))
    assert (body != source) is rewritten


def test_a_bad_rewrite_imports_is_reported_and_off(serving: StaticTree) -> None:
    with override_settings(FRESHSTATIC={"REWRITE_IMPORTS": "sometimes"}):
        assert conf.REWRITE_IMPORTS is False
        assert setting_errors() == [
            "FRESHSTATIC['REWRITE_IMPORTS'] must be True or False (or 'true', "
            "'false', 'yes', 'no', 'on', 'off', '1', '0'), not 'sometimes'; "
            "False is used."
        ]


def test_serving_modules_as_they_are_or_rewritten_gives_each_its_own_version(
    serving: StaticTree,
) -> None:
    serving.write("js/app.js", b'import "./util.js";\n')
    serving.write("js/util.js", b"export const u = 1;\n")
    storage = FreshStaticFilesStorage()
    as_is = storage.url("js/app.js")
    with override_settings(FRESHSTATIC={"REWRITE_IMPORTS": True}):
        rewritten = storage.url("js/app.js")
        assert body_of(rewritten)[0] != b'import "./util.js";\n'
    assert as_is != rewritten
    assert storage.url("js/app.js") == as_is
    assert body_of(as_is) == (b'import "./util.js";\n', IMMUTABLE)


def test_a_large_module_streamed_under_its_version_is_compressed_later(
    serving: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(served, "IN_MEMORY_MAX_BYTES", 1000)
    source = b'import "./util.js";\n' + b"console.log('padding');\n" * 500
    serving.write("js/big.js", source)
    serving.write("js/util.js", b"export const u = 1;\n")
    url = FreshStaticFilesStorage().url("js/big.js")
    assert url != f"/static/js/big.js?v={sha(source)}"
    client = Client()
    first = client.get(url, headers={"accept-encoding": "gzip"})
    assert b"".join(first.streaming_content) == source  # streamed, as it is
    assert "Content-Encoding" not in first

    def compressed() -> bytes | None:
        response = client.get(url, headers={"accept-encoding": "gzip"})
        if response.get("Content-Encoding") != "gzip":
            return None
        return bytes(response.content)

    assert gzip.decompress(wait_for(compressed)) == source
