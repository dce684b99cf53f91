"""FreshStaticMiddleware through Django's request handling (test_serving: real HTTP)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import queue
from collections.abc import Iterable, Iterator
from typing import IO, Any

import brotli
import pytest
import zstandard
from asgiref.sync import async_to_sync
from django.http import HttpResponse
from django.test import Client, override_settings
from django.utils.http import http_date

from freshstatic import locations
from freshstatic.signals import static_changed
from freshstatic.storage import FreshStaticFilesStorage
from freshstatic.watcher import Watcher
from tests.utils import StaticTree, sha, wait_for

MIDDLEWARE = ["freshstatic.middleware.FreshStaticMiddleware"]
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def served(static_tree: StaticTree) -> Iterator[StaticTree]:
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        yield static_tree


def get(path: str, **headers: str) -> Any:
    return Client().get(path, headers=headers)


def test_matching_v_is_immutable(served: StaticTree) -> None:
    served.write("js/app.js", b"console.log(1)")
    url = FreshStaticFilesStorage().url("js/app.js")
    response = get(url)
    assert response.status_code == 200
    assert response.content == b"console.log(1)"  # small: served from memory
    assert response["Cache-Control"] == IMMUTABLE
    assert response["Content-Type"].startswith(
        ("application/javascript", "text/javascript")
    )
    assert response["Content-Length"] == "14"


@pytest.mark.parametrize("query", ["", "?v=000000000000", "?v=", "?x=1"])
def test_missing_or_stale_v_is_no_cache_with_validators(
    served: StaticTree, query: str
) -> None:
    path = served.write("img/a.png", b"\x89PNG fake")
    response = get(f"/static/img/a.png{query}")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-cache"
    assert (
        response["ETag"] == '"' + hashlib.sha256(b"\x89PNG fake").hexdigest()[:32] + '"'
    )
    assert response["Last-Modified"] == http_date(int(path.stat().st_mtime))
    assert response["Content-Type"] == "image/png"


def test_v_of_an_older_version_is_not_immutable(served: StaticTree) -> None:
    served.write("a.css", b"body{}")
    old_url = FreshStaticFilesStorage().url("a.css")
    served.write("a.css", b"body{color:red}")  # no invalidation: cache is stale
    response = get(old_url)
    assert response.content == b"body{color:red}"
    assert response["Cache-Control"] == "no-cache"


def test_conditional_requests(served: StaticTree) -> None:
    path = served.write("a.js", b"x")
    etag = get("/static/a.js")["ETag"]
    not_modified = get("/static/a.js", if_none_match=etag)
    assert not_modified.status_code == 304
    assert not_modified["Cache-Control"] == "no-cache"
    assert not_modified.content == b""
    since = http_date(int(path.stat().st_mtime))
    assert get("/static/a.js", if_modified_since=since).status_code == 304
    assert get("/static/a.js", if_none_match='"other"').status_code == 200
    url = FreshStaticFilesStorage().url("a.js")
    revalidated = get(url, if_none_match=etag)
    assert revalidated.status_code == 304
    assert revalidated["Cache-Control"] == IMMUTABLE


def test_head_has_headers_and_no_body(served: StaticTree) -> None:
    served.write("a.js", b"0123456789")
    response = Client().head("/static/a.js")
    assert response.status_code == 200
    assert response["Content-Length"] == "10"
    assert response.content == b""


def test_other_methods_are_not_allowed(served: StaticTree) -> None:
    served.write("a.js", b"x")
    response = Client().post("/static/a.js")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope.css",
        "/static/",
        "/static/../settings.py",
        "/static/css/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%252e%252e/secret.txt",
        "/static/a%00.css",
        "/static/..\\secret.txt",
        "/static//etc/passwd",
        "/static/link.css",
        "/static/folder",
    ],
)
def test_bad_paths_are_404_and_never_leak(served: StaticTree, path: str) -> None:
    secret = served.base / "secret.txt"
    secret.write_bytes(b"TOP SECRET")
    os.symlink(secret, served.plain / "link.css")
    (served.plain / "folder").mkdir()
    response = get(path)
    assert response.status_code == 404
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    assert b"TOP SECRET" not in body


def test_a_file_deleted_while_served_is_a_404(
    served: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = served.write("gone.js", b"x")
    open_within = locations.open_within

    def vanishing(path: str, roots: Iterable[str]) -> IO[bytes]:
        if path == str(gone):
            gone.unlink()  # deleted between the lookup and the read
        return open_within(path, roots)

    monkeypatch.setattr(locations, "open_within", vanishing)
    assert get("/static/gone.js").status_code == 404


def test_non_static_requests_pass_through(served: StaticTree) -> None:
    response = get("/")
    assert response.status_code == 200
    assert "Cache-Control" not in response


def test_a_cdn_static_url_is_served_as_the_cdns_origin(served: StaticTree) -> None:
    served.write("a.js", b"x")
    with override_settings(STATIC_URL="https://cdn.example/static/"):
        url = FreshStaticFilesStorage().url("a.js")
        assert url == f"https://cdn.example/static/a.js?v={sha(b'x')}"
        response = get(url.removeprefix("https://cdn.example"))
    assert response.status_code == 200
    assert response.content == b"x"
    assert response["Cache-Control"] == IMMUTABLE


def test_stylesheet_references_carry_their_own_hash(served: StaticTree) -> None:
    served.write("img/logo.png", b"logo")
    served.write("fonts/f.woff2", b"font")
    served.write("css/base.css", b"h1{}")
    served.write(
        "css/site.css",
        b'@import "base.css";\n'
        b".a{background:url(../img/logo.png)}\n"
        b".b{background:url('/static/img/logo.png#frag')}\n"
        b"@font-face{src:url(../fonts/f.woff2?#iefix)}\n"
        b".c{background:url(data:image/png;base64,AAAA)}\n"
        b".d{background:url(https://example.com/x.png)}\n"
        b".e{filter:url(#blur)}\n"
        b"/* url(../img/fake.png) */\n"
        b"/*# sourceMappingURL=site.css.map */\n",
    )
    served.write("css/site.css.map", b"{}")
    storage = FreshStaticFilesStorage()
    response = get(storage.url("css/site.css"))
    body = response.content
    logo, font, base = sha(b"logo"), sha(b"font"), sha(b"h1{}")
    assert body.decode().splitlines() == [
        f'@import "base.css?v={base}";',
        f".a{{background:url(../img/logo.png?v={logo})}}",
        f".b{{background:url('/static/img/logo.png?v={logo}#frag')}}",
        f"@font-face{{src:url(../fonts/f.woff2?v={font}#iefix)}}",
        ".c{background:url(data:image/png;base64,AAAA)}",
        ".d{background:url(https://example.com/x.png)}",
        ".e{filter:url(#blur)}",
        "/* url(../img/fake.png) */",
        f"/*# sourceMappingURL=site.css.map?v={sha(b'{}')} */",
    ]
    # The stylesheet's own hash is the hash of the bytes served...
    assert storage.url("css/site.css") == f"/static/css/site.css?v={sha(body)}"
    assert response["Cache-Control"] == IMMUTABLE
    assert response["Content-Length"] == str(len(body))
    # ...and differs from the hash of the file on disk.
    assert sha(served.path("css/site.css").read_bytes()) != sha(body)


def test_stylesheet_without_references_keeps_the_plain_hash(served: StaticTree) -> None:
    served.write("plain.css", b"body{color:red}")
    storage = FreshStaticFilesStorage()
    assert storage.url("plain.css") == f"/static/plain.css?v={sha(b'body{color:red}')}"
    assert get(storage.url("plain.css"))["Cache-Control"] == IMMUTABLE


def test_editing_an_image_changes_every_stylesheet_that_uses_it(
    served: StaticTree,
) -> None:
    served.write("img/logo.png", b"logo one")
    served.write("css/a.css", b".a{background:url(../img/logo.png)}")
    served.write("css/b.css", b'@import "a.css";')
    served.write("css/other.css", b"p{}")
    storage = FreshStaticFilesStorage()
    before = {
        name: storage.url(name) for name in ("css/a.css", "css/b.css", "css/other.css")
    }
    watcher = Watcher(debounce=0.05)
    changed: queue.Queue[object] = queue.Queue()

    def receiver(sender: object, names: object, **kwargs: object) -> None:
        changed.put(names)

    static_changed.connect(receiver)
    watcher.start()
    try:
        served.write("img/logo.png", b"logo two")
        while "img/logo.png" not in (changed.get(timeout=20) or ()):
            pass
    finally:
        watcher.stop()
        static_changed.disconnect(receiver)
    after = {name: storage.url(name) for name in before}
    assert after["css/a.css"] != before["css/a.css"]
    assert after["css/b.css"] != before["css/b.css"]  # through the @import chain
    assert after["css/other.css"] == before["css/other.css"]
    body = get(after["css/b.css"]).content.decode()
    a_hash = after["css/a.css"].split("v=")[1]
    assert body == f'@import "a.css?v={a_hash}";'


def test_unresolved_reference_is_left_with_one_warning(
    served: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    served.write("css/s.css", b".a{background:url(missing.png)}")
    storage = FreshStaticFilesStorage()
    with caplog.at_level(logging.WARNING, logger="freshstatic"):
        url = storage.url("css/s.css")
        response = get(url)
        get(url)
    assert response.status_code == 200
    assert response.content == b".a{background:url(missing.png)}"
    warnings = [
        r.getMessage() for r in caplog.records if "missing.png" in r.getMessage()
    ]
    assert warnings == [
        "Stylesheet 'css/s.css' references 'missing.png', which is not a static "
        "file; the reference is left as it is."
    ]


def test_import_cycles_terminate(served: StaticTree) -> None:
    served.write("a.css", b'@import "b.css"; .a{}')
    served.write("b.css", b'@import "a.css"; .b{}')
    storage = FreshStaticFilesStorage()
    url = storage.url("a.css")
    body = get(url).content.decode()
    assert body.startswith('@import "b.css?v=')
    assert get(storage.url("b.css")).status_code == 200


def test_rewritten_body_is_built_once_per_version(served: StaticTree) -> None:
    served.write("img/i.png", b"i")
    served.write("s.css", b".a{background:url(img/i.png)}")
    storage = FreshStaticFilesStorage()
    generation = storage.hash_cache.refresh().generation
    first = storage.served_files.open("s.css", generation)
    second = storage.served_files.open("s.css", generation)
    assert first is not None
    assert second is not None
    assert second.body is first.body  # the same bytes object: not rebuilt
    assert get(storage.url("s.css")).content == first.body


def test_nothing_is_rewritten_without_the_middleware_serving(
    static_tree: StaticTree,
) -> None:
    static_tree.write("img/i.png", b"i")
    raw = b".a{background:url(img/i.png)}"
    static_tree.write("s.css", raw)
    assert FreshStaticFilesStorage().url("s.css") == f"/static/s.css?v={sha(raw)}"
    with override_settings(MIDDLEWARE=MIDDLEWARE, FRESHSTATIC={"SERVE": False}):
        assert FreshStaticFilesStorage().url("s.css") == f"/static/s.css?v={sha(raw)}"


# -- SERVE = False: something else serves, the middleware vets ------------------------


@pytest.fixture
def behind_staticfiles_view(static_tree: StaticTree) -> Iterator[StaticTree]:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        FRESHSTATIC={"SERVE": False},
        ROOT_URLCONF="tests.urls_serve",
        DEBUG=True,
    ):
        yield static_tree


def test_serve_false_corrects_headers_of_the_view_that_serves(
    behind_staticfiles_view: StaticTree,
) -> None:
    behind_staticfiles_view.write("a.js", b"served by the view")
    url = FreshStaticFilesStorage().url("a.js")
    fresh = get(url)
    assert b"".join(fresh.streaming_content) == b"served by the view"
    assert fresh["Cache-Control"] == IMMUTABLE
    stale = get("/static/a.js?v=000000000000")
    assert stale["Cache-Control"] == "no-cache"
    assert (
        stale["ETag"] == f'"{hashlib.sha256(b"served by the view").hexdigest()[:32]}"'
    )


def test_serve_false_passes_errors_through(behind_staticfiles_view: StaticTree) -> None:
    assert get("/static/nope.js").status_code == 404


# -- SERVE = False in front of WhiteNoise ------------------------------------------


def whitenoise_settings(autorefresh: bool) -> Any:
    return override_settings(
        MIDDLEWARE=[*MIDDLEWARE, "whitenoise.middleware.WhiteNoiseMiddleware"],
        FRESHSTATIC={"SERVE": False},
        WHITENOISE_USE_FINDERS=True,
        WHITENOISE_AUTOREFRESH=autorefresh,
    )


def test_whitenoise_with_autorefresh_gets_immutable_for_fresh_urls(
    static_tree: StaticTree,
) -> None:
    static_tree.write("w.js", b"one")
    with whitenoise_settings(autorefresh=True):
        client = Client()
        storage = FreshStaticFilesStorage()
        first = client.get(storage.url("w.js"))
        assert b"".join(first.streaming_content) == b"one"
        assert first["Cache-Control"] == IMMUTABLE
        static_tree.write("w.js", b"two, longer")
        freshstatic_invalidate()
        second = client.get(storage.url("w.js"))
        assert b"".join(second.streaming_content) == b"two, longer"
        assert second["Cache-Control"] == IMMUTABLE
        assert client.get("/static/w.js?v=000000000000")["Cache-Control"] == "no-cache"


def test_whitenoise_without_autorefresh_is_caught_serving_a_stale_copy(
    static_tree: StaticTree, caplog: pytest.LogCaptureFixture
) -> None:
    """WhiteNoise indexes files at start-up; an edit then goes out with the
    old length. The middleware notices and never marks it immutable."""
    static_tree.write("w.js", b"one")
    with whitenoise_settings(autorefresh=False):
        client = Client()
        storage = FreshStaticFilesStorage()
        assert client.get(storage.url("w.js"))["Cache-Control"] == IMMUTABLE
        static_tree.write("w.js", b"two, longer")
        freshstatic_invalidate()
        with caplog.at_level(logging.WARNING, logger="freshstatic"):
            stale = client.get(storage.url("w.js"))
        assert stale["Content-Length"] == "3"  # WhiteNoise's start-up length
        assert stale["Cache-Control"] == "no-cache"
        assert "does not match the file on disk" in caplog.text


def freshstatic_invalidate() -> None:
    import freshstatic

    freshstatic.invalidate()


# -- exactly the bytes served -----------------------------------------------------


def test_large_files_stream_through_file_response(served: StaticTree) -> None:
    data = os.urandom(3 * 1024 * 1024)  # above the in-memory limit
    served.write("big.bin", data)
    response = get(FreshStaticFilesStorage().url("big.bin"))
    assert response.streaming
    assert b"".join(response.streaming_content) == data
    assert response["Cache-Control"] == IMMUTABLE
    assert response["Content-Length"] == str(len(data))


def test_same_size_same_mtime_edit_is_not_served_under_the_old_hash(
    served: StaticTree,
) -> None:
    path = served.write("a.js", b"console.log(1);")
    old_url = FreshStaticFilesStorage().url("a.js")
    assert get(old_url)["Cache-Control"] == IMMUTABLE
    stat = path.stat()
    path.write_bytes(b"console.log(2);")  # same size...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...same mtime
    response = get(old_url)
    assert response.content == b"console.log(2);"
    assert response["Cache-Control"] == "no-cache"


def test_rewritten_stylesheets_are_validated_by_etag_only(served: StaticTree) -> None:
    served.write("img/logo.png", b"one")
    served.write("s.css", b".a{background:url(img/logo.png)}")
    storage = FreshStaticFilesStorage()
    response = get(storage.url("s.css"))
    # Its body depends on logo.png too: the file's own mtime cannot say.
    assert "Last-Modified" not in response
    assert get("/static/s.css", if_modified_since=http_date()).status_code == 200
    assert get("/static/s.css", if_none_match=response["ETag"]).status_code == 304


def test_a_body_built_without_a_generation_is_checked_file_by_file(
    served: StaticTree,
) -> None:
    """While the cache is unreachable (no generation), a kept stylesheet body
    is used only while every file it was built from is unchanged; once a
    generation is known again, it is built anew."""
    served.write("img/i.png", b"i")
    served.write("s.css", b".a{background:url(img/i.png)}")
    storage = FreshStaticFilesStorage()
    first = storage.served_files.open("s.css", None)
    assert first is not None
    again = storage.served_files.open("s.css", None)
    assert again is not None
    assert again.body is first.body
    served.write("img/i.png", b"edited unannounced")
    edited = storage.served_files.open("s.css", None)
    assert edited is not None
    assert (
        edited.body
        == (f".a{{background:url(img/i.png?v={sha(b'edited unannounced')})}}").encode()
    )
    with_generation = storage.served_files.open("s.css", "some-generation")
    assert with_generation is not None
    assert with_generation.body == edited.body
    assert with_generation.body is not edited.body


@pytest.mark.parametrize("path", ["/static/css/site.css/", "/static/pipe.css"])
def test_trailing_slash_and_fifo_are_404(served: StaticTree, path: str) -> None:
    served.write("css/site.css", b"body{}")
    os.mkfifo(served.plain / "pipe.css")
    assert get(path).status_code == 404


# -- compression ----------------------------------------------------------------

SCRIPT = b"".join(b"export const value%d = %d;\n" % (i, i * i) for i in range(4000))
DECODERS = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompress(data),
}


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
def test_each_coding_decodes_to_the_bytes_hashed(
    served: StaticTree, coding: str
) -> None:
    served.write("js/big.js", SCRIPT)
    url = FreshStaticFilesStorage().url("js/big.js")
    response = get(url, accept_encoding=coding)
    assert response["Content-Encoding"] == coding
    assert response["Vary"] == "Accept-Encoding"
    assert response["Cache-Control"] == IMMUTABLE
    assert int(response["Content-Length"]) == len(response.content) < len(SCRIPT) // 4
    assert DECODERS[coding](response.content) == SCRIPT
    assert f"?v={sha(SCRIPT)}" in url
    assert response["ETag"] == f'"{hashlib.sha256(SCRIPT).hexdigest()[:32]}-{coding}"'


def test_the_preferred_coding_wins_and_identity_stays_available(
    served: StaticTree,
) -> None:
    served.write("js/big.js", SCRIPT)
    assert (
        get("/static/js/big.js", accept_encoding="gzip, br, zstd")["Content-Encoding"]
        == "br"  # the smallest at these levels
    )
    assert (
        get("/static/js/big.js", accept_encoding="gzip, zstd")["Content-Encoding"]
        == "zstd"
    )
    assert (
        get("/static/js/big.js", accept_encoding="gzip, br;q=0.5")["Content-Encoding"]
        == "gzip"
    )
    plain = get("/static/js/big.js")
    assert "Content-Encoding" not in plain
    assert plain.content == SCRIPT
    assert plain["Vary"] == "Accept-Encoding"


def test_each_coding_answers_its_own_conditional_request(served: StaticTree) -> None:
    served.write("js/big.js", SCRIPT)
    br = get("/static/js/big.js", accept_encoding="br")
    gz = get("/static/js/big.js", accept_encoding="gzip")
    assert br["ETag"] != gz["ETag"]
    again = get("/static/js/big.js", accept_encoding="br", if_none_match=br["ETag"])
    assert again.status_code == 304
    assert again["ETag"] == br["ETag"]
    assert again["Vary"] == "Accept-Encoding"
    # gzip's tag says nothing about the br body.
    other = get("/static/js/big.js", accept_encoding="br", if_none_match=gz["ETag"])
    assert other.status_code == 200


def test_each_version_is_compressed_once(
    served: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshstatic import compress

    calls: list[str] = []
    real = compress.compress

    def counting(data: bytes, coding: str, level: int) -> bytes:
        calls.append(coding)
        return real(data, coding, level)

    monkeypatch.setattr(compress, "compress", counting)
    served.write("js/big.js", SCRIPT)
    for _ in range(5):
        get("/static/js/big.js", accept_encoding="br")
        get("/static/js/big.js", accept_encoding="gzip")
    assert sorted(calls) == ["br", "gzip"]
    served.write("js/big.js", SCRIPT + b"//edited\n")
    assert brotli.decompress(
        get("/static/js/big.js", accept_encoding="br").content
    ).endswith(b"//edited\n")
    assert sorted(calls) == ["br", "br", "gzip"]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("img/a.png", b"\x89PNG" * 1000),
        ("tiny.css", b"a{}"),
        ("font.woff2", b"w" * 999),
    ],
)
def test_incompressible_or_tiny_bodies_go_as_they_are(
    served: StaticTree, name: str, data: bytes
) -> None:
    served.write(name, data)
    response = get(f"/static/{name}", accept_encoding="gzip, br, zstd")
    assert "Content-Encoding" not in response
    assert response.content == data


def test_compression_can_be_turned_off(served: StaticTree) -> None:
    served.write("js/big.js", SCRIPT)
    with override_settings(MIDDLEWARE=MIDDLEWARE, FRESHSTATIC={"COMPRESSION": False}):
        response = get("/static/js/big.js", accept_encoding="gzip, br")
    assert "Content-Encoding" not in response
    assert response.content == SCRIPT


def test_rewritten_stylesheets_are_compressed_too(served: StaticTree) -> None:
    served.write("img/i.png", b"i")
    served.write("css/site.css", b".a{background:url(../img/i.png)}\n" * 200)
    url = FreshStaticFilesStorage().url("css/site.css")
    plain = get(url).content
    response = get(url, accept_encoding="br")
    assert response["Content-Encoding"] == "br"
    assert brotli.decompress(response.content) == plain
    assert b"?v=" in plain
    assert response["Cache-Control"] == IMMUTABLE


def test_a_large_file_is_compressed_off_the_request_path(
    served: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshstatic import served as served_module

    monkeypatch.setattr(served_module, "IN_MEMORY_MAX_BYTES", 1000)
    served.write("js/big.js", SCRIPT)
    first = get("/static/js/big.js", accept_encoding="gzip")
    # Not ready yet: the first answer streams the file as it is...
    assert "Content-Encoding" not in first
    assert b"".join(first.streaming_content) == SCRIPT

    # ...and later ones get it compressed, once it is.
    def compressed() -> Any:
        response = get("/static/js/big.js", accept_encoding="gzip")
        return response if "Content-Encoding" in response else None

    later = wait_for(compressed, timeout=60)
    assert gzip.decompress(later.content) == SCRIPT


# -- byte ranges ------------------------------------------------------------------

BODY = bytes(range(256)) * 4  # 1,024 bytes, incompressible type below


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "part"),
    [
        ("bytes=0-9", 206, "bytes 0-9/1024", BODY[0:10]),
        ("bytes=1000-", 206, "bytes 1000-1023/1024", BODY[1000:]),
        ("bytes=-24", 206, "bytes 1000-1023/1024", BODY[-24:]),
        ("bytes=1000-5000", 206, "bytes 1000-1023/1024", BODY[1000:]),
        ("bytes=-5000", 206, "bytes 0-1023/1024", BODY),
        ("bytes=1024-", 416, "bytes */1024", b""),
        ("bytes=-0", 416, "bytes */1024", b""),
        ("bytes=5-2", 200, None, BODY),
        ("bytes=0-1,5-6", 200, None, BODY),
        ("items=0-9", 200, None, BODY),
        ("bytes=x-9", 200, None, BODY),
    ],
)
@pytest.mark.parametrize("large", [False, True])
def test_range_matrix(
    served: StaticTree,
    monkeypatch: pytest.MonkeyPatch,
    range_header: str,
    status: int,
    content_range: str | None,
    part: bytes,
    large: bool,
) -> None:
    from freshstatic import served as served_module

    if large:  # streamed from the file rather than sent from memory
        monkeypatch.setattr(served_module, "IN_MEMORY_MAX_BYTES", 100)
    served.write("media/clip.bin", BODY)
    response = get("/static/media/clip.bin", range=range_header)
    assert response.status_code == status
    assert response.get("Content-Range") == content_range
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    assert body == part
    assert int(response["Content-Length"]) == len(part)
    if status != 416:
        assert response["Accept-Ranges"] == "bytes"


def test_if_range_sends_the_whole_body_once_the_file_changed(
    served: StaticTree,
) -> None:
    served.write("media/clip.bin", BODY)
    first = get("/static/media/clip.bin")
    assert (
        get(
            "/static/media/clip.bin", range="bytes=0-9", if_range=first["ETag"]
        ).status_code
        == 206
    )
    assert (
        get(
            "/static/media/clip.bin", range="bytes=0-9", if_range=first["Last-Modified"]
        ).status_code
        == 206
    )
    served.write("media/clip.bin", BODY[::-1])
    stale = get("/static/media/clip.bin", range="bytes=0-9", if_range=first["ETag"])
    assert stale.status_code == 200
    assert stale.content == BODY[::-1]
    weak = get(
        "/static/media/clip.bin", range="bytes=0-9", if_range="W/" + first["ETag"]
    )
    assert weak.status_code == 200


def test_a_range_is_of_the_identity_body(served: StaticTree) -> None:
    served.write("js/big.js", SCRIPT)
    response = get("/static/js/big.js", range="bytes=0-9", accept_encoding="gzip, br")
    assert response.status_code == 206
    assert "Content-Encoding" not in response
    assert response.content == SCRIPT[:10]


def test_head_sends_the_headers_of_get(served: StaticTree) -> None:
    served.write("js/big.js", SCRIPT)
    got = get("/static/js/big.js", accept_encoding="br")
    head = Client().head("/static/js/big.js", headers={"accept-encoding": "br"})
    assert head.content == b""
    for header in ("Content-Length", "Content-Encoding", "ETag", "Vary"):
        assert head[header] == got[header]


# -- ASGI ---------------------------------------------------------------------------


@pytest.mark.parametrize("large", [False, True])
def test_async_requests_are_served_with_an_asynchronous_stream(
    served: StaticTree, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    from django.test import AsyncClient

    from freshstatic import served as served_module

    if large:
        monkeypatch.setattr(served_module, "IN_MEMORY_MAX_BYTES", 1000)
    served.write("js/big.js", SCRIPT)
    url = FreshStaticFilesStorage().url("js/big.js")

    async def fetch() -> tuple[Any, bytes]:
        response = await AsyncClient().get(url)
        if response.streaming:
            assert response.is_async
            return response, b"".join(
                [chunk async for chunk in response.streaming_content]
            )
        return response, response.content

    response, body = async_to_sync(fetch)()
    assert response.status_code == 200
    assert response["Cache-Control"] == IMMUTABLE
    assert response.streaming is large
    assert body == SCRIPT


# -- versions in file names ----------------------------------------------------------


class FilenameStorage(FreshStaticFilesStorage):
    """version_in="filename" without OPTIONS (which Django 4.2 drops under
    override_settings)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(version_in="filename", **options)


FILENAME_STORAGE = {"staticfiles": {"BACKEND": f"{__name__}.FilenameStorage"}}


@pytest.fixture
def by_filename(served: StaticTree) -> Iterator[StaticTree]:
    with override_settings(STORAGES=FILENAME_STORAGE):
        yield served


def filename_storage() -> FreshStaticFilesStorage:
    return FreshStaticFilesStorage(version_in="filename")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("css/site.css", "/static/css/site.{h}.css"),
        ("js/app.min.js", "/static/js/app.min.{h}.js"),
        ("LICENSE", "/static/LICENSE.{h}"),
        ("img/logo.svg?x=1#mark", "/static/img/logo.{h}.svg?x=1#mark"),
    ],
)
def test_the_version_can_go_in_the_file_name(
    by_filename: StaticTree, name: str, expected: str
) -> None:
    data = b"content of " + name.encode()
    by_filename.write(name.partition("?")[0], data)
    url = filename_storage().url(name)
    assert url == expected.format(h=sha(data))
    response = get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response["Cache-Control"] == IMMUTABLE


def test_a_wrong_hash_in_the_name_is_never_immutable(by_filename: StaticTree) -> None:
    by_filename.write("css/site.css", b"body{}")
    response = get("/static/css/site.000000000000.css")
    assert response.status_code == 200
    assert response.content == b"body{}"
    assert response["Cache-Control"] == "no-cache"


def test_a_real_file_with_a_hash_like_name_wins(by_filename: StaticTree) -> None:
    by_filename.write("css/site.css", b"the source")
    by_filename.write("css/site.0123456789ab.css", b"a real file")
    response = get("/static/css/site.0123456789ab.css")
    assert response.content == b"a real file"
    assert response["Cache-Control"] == "no-cache"  # it has no version of its own


def test_stylesheet_references_use_the_file_name_form(by_filename: StaticTree) -> None:
    by_filename.write("img/i.png", b"i")
    by_filename.write("css/site.css", b".a{background:url(../img/i.png#x)}")
    body = get(filename_storage().url("css/site.css")).content
    assert body == f".a{{background:url(../img/i.{sha(b'i')}.png#x)}}".encode()
    assert get(f"/static/img/i.{sha(b'i')}.png").content == b"i"


def test_under_asgi_pages_get_the_live_client(served: StaticTree) -> None:
    page = b"<html><body><p>page</p></body></html>"

    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse(page, content_type="text/html; charset=utf-8")

    async def run() -> Any:
        from django.test import RequestFactory

        from freshstatic.middleware import FreshStaticMiddleware

        middleware = FreshStaticMiddleware(get_response)
        return await middleware(RequestFactory().get("/"))

    with override_settings(MIDDLEWARE=MIDDLEWARE, FRESHSTATIC={"LIVE": True}):
        response = async_to_sync(run)()
    assert b"freshstatic/live.js" in response.content
    assert response.content.index(b"live.js") < response.content.index(b"</body>")


# -- responses made again from memory ----------------------------------------------


def exchange(path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    response = get(path, **headers)
    return response.status_code, dict(response.items()), response.content


def test_a_response_is_made_again_from_memory_without_opening_anything(
    served: StaticTree, opened_paths: list[str]
) -> None:
    served.write("css/site.css", b"body { color: red }\n" * 50)
    url = FreshStaticFilesStorage().url("css/site.css")
    first = exchange(url, **{"Accept-Encoding": "gzip"})
    assert first[1]["Content-Encoding"] == "gzip"
    opened_paths.clear()
    again = exchange(url, **{"Accept-Encoding": "gzip"})
    assert opened_paths == []  # one stat() of the file, no open()
    assert again == first
    # Another coding is another response, made once.
    identity = exchange(url)
    assert identity[2] == b"body { color: red }\n" * 50
    assert identity[1]["ETag"] != first[1]["ETag"]


def test_a_prepared_304_is_the_304_first_made(served: StaticTree) -> None:
    served.write("js/app.js", b"console.log(1)")
    url = FreshStaticFilesStorage().url("js/app.js")
    etag = get(url)["ETag"]
    first = exchange(url, **{"If-None-Match": etag})
    again = exchange(url, **{"If-None-Match": etag})
    listed = exchange(url, **{"If-None-Match": f'"other", {etag}'})
    since = exchange(url, **{"If-Modified-Since": first[1]["Last-Modified"]})
    assert first[0] == again[0] == listed[0] == 304
    assert again == first == listed
    assert since[0] == 304
    # A tag that does not match gets the body, from memory too.
    assert exchange(url, **{"If-None-Match": '"other"'})[2] == b"console.log(1)"


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda path: path.write_bytes(b"let blue = 2;"), id="edit"),
        pytest.param(
            lambda path: os.utime(path, ns=(0, path.stat().st_mtime_ns + 2 * 10**9)),
            id="touch",
        ),
    ],
)
def test_a_prepared_response_is_never_sent_for_a_changed_file(
    served: StaticTree, edit: Any
) -> None:
    path = served.write("js/app.js", b"let red = 1;")
    for _ in range(2):
        assert get("/static/js/app.js").content == b"let red = 1;"
    before = get("/static/js/app.js")["ETag"]
    edit(path)
    after = get("/static/js/app.js")
    assert after.content == path.read_bytes()
    assert after["Last-Modified"] == http_date(int(path.stat().st_mtime))
    if path.read_bytes() != b"let red = 1;":
        assert after["ETag"] != before


def test_a_deleted_file_is_a_404_once_prepared(served: StaticTree) -> None:
    path = served.write("gone.js", b"x")
    for _ in range(2):
        assert get("/static/gone.js").status_code == 200
    path.unlink()
    assert get("/static/gone.js").status_code == 404


def test_a_changed_setting_makes_responses_anew(served: StaticTree) -> None:
    served.write("css/site.css", b"body { color: red }" * 20)
    headers = {"Accept-Encoding": "gzip"}
    assert get("/static/css/site.css", **headers)["Content-Encoding"] == "gzip"
    assert get("/static/css/site.css", **headers)["Content-Encoding"] == "gzip"
    with override_settings(FRESHSTATIC={"COMPRESSION": []}):
        assert "Content-Encoding" not in get("/static/css/site.css", **headers)
    assert get("/static/css/site.css", **headers)["Content-Encoding"] == "gzip"


def test_prepared_responses_are_bounded_in_bytes(
    served: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshstatic import middleware

    monkeypatch.setattr(
        middleware,
        "_prepared",
        middleware.BoundedCache(64 * 1024, middleware._Prepared.cost),
    )
    served.write("img/a.png", b"\x89PNG" + b"\0" * 4000)
    # Every query string is another request: each takes its share.
    for number in range(200):
        response = get(f"/static/img/a.png?x={number}&pad={'p' * 1000}")
        assert response.status_code == 200
    assert 0 < middleware._prepared.bytes <= 64 * 1024
    assert len(middleware._prepared) < 200


def test_ranges_and_deltas_are_never_prepared(served: StaticTree) -> None:
    served.write("js/app.js", b"0123456789")
    for _ in range(2):
        ranged = get("/static/js/app.js", Range="bytes=2-4")
        assert ranged.status_code == 206
        assert ranged.content == b"234"
    assert get("/static/js/app.js").content == b"0123456789"
    assert get("/static/js/app.js", Range="bytes=5-").content == b"56789"


def test_a_prepared_response_is_made_anew_in_time_and_kept_again(
    served: StaticTree, opened_paths: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshstatic import middleware

    served.write("js/app.js", b"let a = 1;")
    clock = [1000.0]
    monkeypatch.setattr(middleware, "monotonic", lambda: clock[0])
    first = exchange("/static/js/app.js")
    clock[0] += middleware.PREPARED_SECONDS + 1
    opened_paths.clear()
    assert exchange("/static/js/app.js") == first
    assert opened_paths != []  # expired: made anew, from the file
    opened_paths.clear()
    assert exchange("/static/js/app.js") == first
    assert opened_paths == []  # ...and kept for as long again
