"""
The live page's server side: the setting and its check, the script added to
HTML responses, the event stream (threaded and asynchronous), the question
"which of my URLs changed?", and what feeds the streams (the watcher's
batches, other processes' rotations over Redis, template edits).
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib.util
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.core.checks import run_checks
from django.core.files.storage import StorageHandler, storages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test import Client, RequestFactory, override_settings
from django.urls import path
from django.utils.autoreload import file_changed

import freshstatic
from freshstatic import broadcast, live
from freshstatic.conf import conf, setting_errors
from freshstatic.middleware import FreshStaticMiddleware
from tests.utils import (
    ROOT,
    RedisServer,
    ServerProcess,
    StaticTree,
    free_port,
    run_python,
    subprocess_env,
    wait_for,
)

MIDDLEWARE = "freshstatic.middleware.FreshStaticMiddleware"
PAGE = b"<!doctype html><html><body><p>page</p></body></html>"
EVENTS = "/static/__freshstatic__/events"
URLS = "/static/__freshstatic__/urls"


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


def data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"html": "</body>"})


urlpatterns = [path("", page), path("data", data)]

LIVE_SITE = {
    "DEBUG": True,
    "MIDDLEWARE": [MIDDLEWARE],
    "ROOT_URLCONF": "tests.test_live",
}


@pytest.fixture(autouse=True)
def _forget_what_pages_asked() -> Iterator[None]:
    live.forget()
    yield
    live.forget()


@pytest.fixture
def live_site() -> Iterator[None]:
    with override_settings(**LIVE_SITE):
        yield


def checks(**settings: Any) -> list[str]:
    with override_settings(**settings):
        return sorted(
            str(message.id)
            for message in run_checks(tags=["staticfiles"])
            if str(message.id).startswith("freshstatic.")
        )


# -- the setting and its check ---------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [("auto", "auto"), (" AUTO ", "auto"), (True, True), ("off", False), (0, False)],
)
def test_live_is_read_as_users_write_it(written: object, expected: object) -> None:
    with override_settings(FRESHSTATIC={"LIVE": written}):
        assert expected == conf.LIVE
        assert setting_errors() == []


def test_an_invalid_live_falls_back_to_auto_and_is_reported() -> None:
    with override_settings(FRESHSTATIC={"LIVE": "sometimes"}):
        assert conf.LIVE == "auto"
        assert checks() == ["freshstatic.E006"]


@pytest.mark.parametrize(
    ("live_setting", "debug", "on"),
    [
        ("auto", True, True),
        ("auto", False, False),
        (True, False, True),
        (False, True, False),
    ],
)
def test_auto_means_on_when_debug(live_setting: object, debug: bool, on: bool) -> None:
    with override_settings(DEBUG=debug, FRESHSTATIC={"LIVE": live_setting}):
        assert live.enabled() is on


@pytest.mark.parametrize(
    ("live_setting", "debug", "expected"),
    [
        (True, False, ["freshstatic.W009"]),
        ("yes", False, ["freshstatic.W009"]),
        (True, True, []),
        ("auto", False, []),
        ("auto", True, []),
        (False, False, []),
    ],
)
def test_live_on_in_production_is_warned_about(
    live_setting: object, debug: bool, expected: list[str]
) -> None:
    assert checks(DEBUG=debug, FRESHSTATIC={"LIVE": live_setting}) == expected


def test_the_client_is_a_static_file_of_the_package() -> None:
    found = finders.find(live.SCRIPT_NAME)
    assert found is not None
    assert Path(found) == ROOT / "src/freshstatic/static" / live.SCRIPT_NAME
    # Shipped in the distribution: a package-data pattern matches it.
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1]
    patterns = re.findall(r'"([^"]+)"', section.split("\n[", 1)[0])
    assert any(fnmatch.fnmatch(f"static/{live.SCRIPT_NAME}", p) for p in patterns)


# -- the script added to pages ---------------------------------------------------------


def injected(response: HttpResponseBase, **extra: Any) -> HttpResponseBase:
    request = RequestFactory().get("/")
    for name, value in extra.items():
        setattr(request, name, value)
    return live.inject(request, response)


def script_attributes(content: bytes) -> dict[str, str]:
    tags = re.findall(rb"<script [^>]*>", content)
    assert len(tags) == 1, content
    return {
        name.decode(): value.decode()
        for name, value in re.findall(rb'([\w-]+)="([^"]*)"', tags[0])
    }


def test_html_gets_the_client_before_the_last_body_end(live_site: None) -> None:
    html = b"<html><body><template></body></template><p>x</p></BODY ></html>"
    response = HttpResponse(html)
    response["Content-Length"] = str(len(html))

    content = injected(response).content

    head, tag, tail = re.split(rb"(<script [^>]*></script>)", content)
    assert head == b"<html><body><template></body></template><p>x</p>"
    assert tail == b"</BODY ></html>"
    assert int(response["Content-Length"]) == len(content)
    attributes = script_attributes(tag)
    storage = storages["staticfiles"]
    assert attributes["src"] == storage.url(live.SCRIPT_NAME)
    assert "?v=" in attributes["src"]
    assert attributes["data-events"] == EVENTS
    assert attributes["data-urls"] == URLS
    assert attributes["data-static"] == "/static/"
    assert "nonce" not in attributes
    assert "data-worker" not in attributes


@pytest.mark.parametrize(
    "response",
    [
        JsonResponse({"html": "</body>"}),
        StreamingHttpResponse(iter([PAGE])),
        HttpResponse(b"<p>no body end</p>"),
        HttpResponse(status=304),
        HttpResponse(PAGE, content_type="text/plain"),
    ],
    ids=["json", "streaming", "no-body-end", "not-modified", "text"],
)
def test_other_responses_are_left_alone(
    live_site: None, response: HttpResponseBase
) -> None:
    before = b"" if response.streaming else response.content  # type: ignore[attr-defined]
    assert injected(response) is response
    if not response.streaming:
        assert response.content == before  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("header", "value"),
    [("Content-Encoding", "gzip"), ("Content-Disposition", "attachment; x.html")],
)
def test_encoded_or_downloaded_html_is_left_alone(
    live_site: None, header: str, value: str
) -> None:
    response = HttpResponse(PAGE)
    response[header] = value
    assert injected(response).content == PAGE  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("settings", "added"),
    [
        ({"DEBUG": False}, False),
        ({"DEBUG": False, "FRESHSTATIC": {"LIVE": True}}, True),
        ({"DEBUG": True, "FRESHSTATIC": {"LIVE": False}}, False),
    ],
)
def test_only_when_live(settings: dict[str, Any], added: bool) -> None:
    with override_settings(**settings):
        content = injected(HttpResponse(PAGE)).content  # type: ignore[attr-defined]
    assert (b"<script" in content) is added


@pytest.mark.parametrize(
    ("policy", "nonce", "worker"),
    [
        ("default-src 'self'", None, True),
        ("script-src 'nonce-abc+/=' 'self'", "abc+/=", True),
        ("default-src 'nonce-d1'; script-src 'self' 'nonce-s1'", "s1", True),
        ("script-src 'nonce-s1'; script-src-elem 'nonce-e1' 'self'", "e1", False),
        ("script-src 'nonce-s1' 'strict-dynamic' 'self'", "s1", False),
        ("script-src 'nonce-s1'; worker-src 'self'", "s1", True),
        ("default-src 'self'; child-src 'none'", None, False),
    ],
)
def test_the_pages_policy_gives_the_nonce_and_whether_a_worker_may_run(
    live_site: None, policy: str, nonce: str | None, worker: bool
) -> None:
    response = HttpResponse(PAGE)
    response["Content-Security-Policy"] = policy
    attributes = script_attributes(injected(response).content)  # type: ignore[attr-defined]
    assert attributes.get("nonce") == nonce
    assert ("data-worker" not in attributes) is worker


def test_a_report_only_policy_changes_nothing(live_site: None) -> None:
    response = HttpResponse(PAGE)
    response["Content-Security-Policy-Report-Only"] = "script-src 'nonce-r1'"
    attributes = script_attributes(injected(response).content)  # type: ignore[attr-defined]
    assert "nonce" not in attributes
    assert "data-worker" not in attributes


def test_django_csps_request_nonce(live_site: None) -> None:
    # django-csp's CSPMiddleware sets request.csp_nonce (lazily), and builds
    # its header after this one added the script.
    content = injected(HttpResponse(PAGE), csp_nonce="from-request").content  # type: ignore[attr-defined]
    assert script_attributes(content)["nonce"] == "from-request"


def test_a_built_policy_wins_over_the_requests_nonce(live_site: None) -> None:
    response = HttpResponse(PAGE)
    response["Content-Security-Policy"] = "script-src 'self'"
    content = injected(response, csp_nonce="unused").content  # type: ignore[attr-defined]
    assert "nonce" not in script_attributes(content)


@pytest.mark.skipif(
    importlib.util.find_spec("django.middleware.csp") is None,
    reason="Django 6.0+ has its own CSP middleware",
)
@pytest.mark.parametrize("csp_first", [True, False])
def test_djangos_own_csp_middleware(live_site: None, csp_first: bool) -> None:
    from django.utils.csp import CSP  # type: ignore[import-not-found,unused-ignore]

    csp = "django.middleware.csp.ContentSecurityPolicyMiddleware"
    middleware = [csp, MIDDLEWARE] if csp_first else [MIDDLEWARE, csp]
    with override_settings(
        MIDDLEWARE=middleware,
        SECURE_CSP={"script-src": [CSP.SELF, CSP.NONCE]},
    ):
        response = Client().get("/")
    attributes = script_attributes(response.content)
    policy = response["Content-Security-Policy"]
    if csp_first:
        # Its header is built after the script was added: with the nonce read.
        assert f"'nonce-{attributes['nonce']}'" in policy
    else:
        # The header was built first, without a nonce the page never used:
        # the script loads through 'self'.
        assert "nonce" not in policy
        assert "nonce" not in attributes


def test_the_middleware_adds_the_client_to_pages_only(live_site: None) -> None:
    client = Client()
    assert b"data-events=" in client.get("/").content
    assert client.get("/data").json() == {"html": "</body>"}


# -- the event stream ------------------------------------------------------------------


def read_events(stream: Iterator[bytes], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a stream (keep-alive comments skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        chunk = next(stream)
        for block in chunk.decode().split("\n\n"):
            if block.startswith("data: "):
                found.append(json.loads(block[len("data: ") :]))
    return found


def later(action: Any, *args: Any) -> threading.Thread:
    """Run ``action`` in another thread (as the watcher would) once the
    stream is being read; the stream waits for what it sends."""
    thread = threading.Thread(target=action, args=args, daemon=True)
    thread.start()
    return thread


def generation() -> str | None:
    return storages["staticfiles"].hash_cache.refresh().generation  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def stream(live_site: None) -> Iterator[Iterator[bytes]]:
    response = Client().get(EVENTS)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache, no-store, no-transform"
    assert response.streaming
    assert live.open_streams() == 1
    yield iter(response.streaming_content)  # type: ignore[arg-type]
    response.close()
    assert live.open_streams() == 0


def test_a_stream_starts_with_the_servers_identity_and_generation(
    stream: Iterator[bytes],
) -> None:
    [hello] = read_events(stream, 1)
    assert hello == {
        "type": "hello",
        "server": live.SERVER_ID,
        "generation": generation(),
    }


def test_each_batch_is_sent_with_its_names_new_urls_and_generation(
    stream: Iterator[bytes], static_tree: StaticTree
) -> None:
    static_tree.write("css/site.css", b"h1 { color: blue }")
    read_events(stream, 1)
    later(freshstatic.invalidate, ("css/site.css", "img/gone.svg"))
    [change] = read_events(stream, 1)
    storage = storages["staticfiles"]
    assert change == {
        "type": "change",
        "generation": generation(),
        "names": ["css/site.css", "img/gone.svg"],
        # Swapped at once by the pages that have them.
        "urls": {
            "css/site.css": storage.url("css/site.css"),
            "img/gone.svg": "/static/img/gone.svg",
        },
    }
    later(freshstatic.invalidate)
    [everything] = read_events(stream, 1)
    assert everything["names"] is None
    assert everything["urls"] is None
    assert everything["generation"] not in (None, change["generation"])


def test_a_large_batch_is_sent_without_its_urls(
    stream: Iterator[bytes], static_tree: StaticTree
) -> None:
    read_events(stream, 1)
    names = tuple(f"img/{number}.svg" for number in range(live.MAX_URLS_IN_EVENT + 1))
    later(freshstatic.invalidate, names)
    [change] = read_events(stream, 1)
    assert change["names"] == list(names)
    assert change["urls"] is None  # the pages ask about theirs


def test_a_stylesheet_pages_asked_about_goes_with_a_change_of_its_image(
    stream: Iterator[bytes], static_tree: StaticTree
) -> None:
    static_tree.write("css/site.css", b'.a { background: url("../img/a.svg") }')
    static_tree.write("img/a.svg", b"<svg/>")
    storage = storages["staticfiles"]
    read_events(stream, 1)
    assert ask([relative(storage.url("css/site.css"))]) == {}  # a page asked

    static_tree.write("img/a.svg", b"<svg></svg>")
    later(freshstatic.invalidate, ("img/a.svg",))

    [change] = read_events(stream, 1)
    assert change["urls"] == {
        "img/a.svg": storage.url("img/a.svg"),
        "css/site.css": storage.url("css/site.css"),  # no question needed
    }


def test_a_template_edit_reloads_pages(stream: Iterator[bytes], tmp_path: Path) -> None:
    read_events(stream, 1)
    templates = tmp_path / "templates"
    (templates / "deep").mkdir(parents=True)
    with override_settings(
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [templates],
            }
        ]
    ):

        def edits() -> None:
            # What the autoreloader sends: a Python file restarts the server
            # instead, and a file outside the templates is nobody's business.
            for changed in (templates / "views.py", tmp_path / "notes.txt"):
                assert not any(
                    result
                    for _receiver, result in file_changed.send(
                        sender=None, file_path=changed
                    )
                )
            file_changed.send(sender=None, file_path=templates / "deep" / "a.html")

        later(edits)
        [reload] = read_events(stream, 1)
    assert reload == {"type": "reload", "reason": "template", "name": "a.html"}


def test_an_idle_stream_sends_keep_alive_comments(
    live_site: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "KEEPALIVE_SECONDS", 0.05)
    response = Client().get(EVENTS)
    chunks = iter(response.streaming_content)  # type: ignore[arg-type]
    assert next(chunks).startswith(b"data: ")
    assert next(chunks) == b": keep-alive\n\n"
    response.close()


def test_a_stream_ends_after_its_lifetime(
    live_site: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "STREAM_MAX_SECONDS", 0.05)
    response = Client().get(EVENTS)
    chunks = list(response.streaming_content)  # type: ignore[arg-type]
    assert chunks[0].startswith(b"data: ")
    assert live.open_streams() == 0


def test_a_slow_page_keeps_only_the_latest_events(live_site: None) -> None:
    response = Client().get(EVENTS)
    chunks = iter(response.streaming_content)  # type: ignore[arg-type]
    next(chunks)
    for number in range(live.MAX_QUEUED_EVENTS + 10):
        freshstatic.invalidate((f"{number}.css",))
    events = read_events(chunks, live.MAX_QUEUED_EVENTS)
    assert events[0]["names"] == ["10.css"]
    assert events[-1]["names"] == [f"{live.MAX_QUEUED_EVENTS + 9}.css"]
    response.close()


@pytest.mark.parametrize(
    ("method", "url"), [("post", EVENTS), ("get", URLS), ("put", URLS)]
)
def test_each_endpoint_takes_one_method(live_site: None, method: str, url: str) -> None:
    assert getattr(Client(), method)(url).status_code == 405


def test_the_endpoints_are_static_files_like_any_other_when_not_live() -> None:
    with override_settings(MIDDLEWARE=[MIDDLEWARE]):  # DEBUG is False
        assert Client().get(EVENTS).status_code == 404


# -- asynchronously --------------------------------------------------------------------


async def read_async(stream: Any, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        chunk = await stream.__anext__()
        for block in chunk.decode().split("\n\n"):
            if block.startswith("data: "):
                found.append(json.loads(block[len("data: ") :]))
    return found


def test_under_asgi_the_stream_is_an_asynchronous_iterator(live_site: None) -> None:
    async def run() -> tuple[list[dict[str, Any]], int]:
        async def get_response(request: HttpRequest) -> HttpResponseBase:
            raise AssertionError("the stream is answered by the middleware")

        middleware = FreshStaticMiddleware(get_response)
        response = await middleware(RequestFactory().get(EVENTS))
        assert response.is_async
        stream = response.streaming_content.__aiter__()
        events = await read_async(stream, 1)
        threads = threading.active_count()
        await asyncio.to_thread(freshstatic.invalidate, ("css/site.css",))
        events += await read_async(stream, 1)
        await stream.aclose()
        return events, threads

    threads_before = threading.active_count()
    (hello, change), threads_waiting = asyncio.run(run())
    assert hello["type"] == "hello"
    assert change["names"] == ["css/site.css"]
    assert live.open_streams() == 0
    # Waiting for events held no thread of its own.
    assert threads_waiting <= threads_before + 1


def test_under_asgi_pages_get_the_client_too(live_site: None) -> None:
    async def run() -> HttpResponseBase:
        return await live.ainject(RequestFactory().get("/"), HttpResponse(PAGE))

    assert b"data-events=" in asyncio.run(run()).content  # type: ignore[attr-defined]


def test_under_asgi_pages_ask_about_their_urls(live_site: None) -> None:
    async def run() -> HttpResponseBase:
        request = RequestFactory().post(
            URLS, data={"urls": []}, content_type="application/json"
        )
        return await live.events(request, asynchronous=True)

    response = asyncio.run(run())
    assert json.loads(response.content) == {"changed": {}}  # type: ignore[attr-defined]


# -- which of a page's URLs changed ----------------------------------------------------


def ask(urls: list[str], names: list[str] | None = None, **extra: Any) -> Any:
    response = Client().post(
        URLS,
        data={"urls": urls, "names": names, **extra},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()["changed"]


def relative(url: str) -> str:
    assert url.startswith("/static/")
    return url[len("/static/") :]


def test_a_page_learns_which_of_its_urls_changed(
    live_site: None, static_tree: StaticTree
) -> None:
    static_tree.write("css/site.css", b"h1 { color: blue }")
    static_tree.write("js/app.js", b"1")
    storage = storages["staticfiles"]
    site_css, app_js = storage.url("css/site.css"), storage.url("js/app.js")
    assert ask([relative(site_css), relative(app_js)]) == {}

    static_tree.write("css/site.css", b"h1 { color: red }")
    freshstatic.invalidate(("css/site.css",))

    new_css = storage.url("css/site.css")
    assert new_css != site_css
    assert ask([relative(site_css), relative(app_js)]) == {relative(site_css): new_css}


def test_a_stylesheet_whose_image_changed_is_changed(
    live_site: None, static_tree: StaticTree
) -> None:
    static_tree.write("css/site.css", b'.a { background: url("../img/a.svg") }')
    static_tree.write("img/a.svg", b"<svg/>")
    storage = storages["staticfiles"]
    site_css = storage.url("css/site.css")

    static_tree.write("img/a.svg", b"<svg></svg>")
    freshstatic.invalidate(("img/a.svg",))

    assert ask([relative(site_css)], ["img/a.svg"]) == {
        relative(site_css): storage.url("css/site.css")
    }


def test_an_unversioned_url_changes_with_its_name_in_the_batch(
    live_site: None, static_tree: StaticTree
) -> None:
    static_tree.write("js/module.js", b"export default 1")
    storage = storages["staticfiles"]
    # A module's own import, without ?v=: changed only when named.
    assert ask(["js/module.js"], ["js/other.js"]) == {}
    assert ask(["js/module.js"], None) == {}
    assert ask(["js/module.js"], ["js/module.js"]) == {
        "js/module.js": storage.url("js/module.js")
    }


def test_versions_in_file_names(static_tree: StaticTree) -> None:
    static_tree.write("css/site.css", b"h1 { color: blue }")
    # Built as Django builds it (Django 4.2's override_settings(STORAGES=...)
    # drops OPTIONS).
    storage = StorageHandler(
        {
            "staticfiles": {
                "BACKEND": "freshstatic.storage.FreshStaticFilesStorage",
                "OPTIONS": {"version_in": "filename"},
            }
        }
    )["staticfiles"]
    old = storage.url("css/site.css")
    assert re.fullmatch(r"/static/css/site\.[0-9a-f]{12}\.css", old)
    assert live.changed_urls(storage, [relative(old)], None, None) == {}

    static_tree.write("css/site.css", b"h1 { color: red }")
    freshstatic.invalidate(("css/site.css",))

    assert live.changed_urls(storage, [relative(old)], None, None) == {
        relative(old): storage.url("css/site.css")
    }


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"names": []}',
        b'{"urls": "css/site.css"}',
        b'{"urls": [1]}',
        b'{"urls": [], "names": "x"}',
        b'{"urls": [], "generation": 1}',
        json.dumps({"urls": ["x" * (live.URL_MAX_CHARS + 1)]}).encode(),
        json.dumps({"urls": ["x"] * (live.URLS_MAX_COUNT + 1)}).encode(),
    ],
)
def test_a_malformed_question_is_a_400(live_site: None, body: bytes) -> None:
    response = Client().post(URLS, data=body, content_type="application/json")
    assert response.status_code == 400


def test_an_oversized_question_is_a_413(live_site: None) -> None:
    body = b'{"urls": ["' + b"x" * live.URLS_MAX_BODY_BYTES + b'"]}'
    response = Client().post(URLS, data=body, content_type="application/json")
    assert response.status_code == 413


# -- across processes, through Redis ---------------------------------------------------


def other_process(code: str, redis: RedisServer, static: Path) -> None:
    """Run ``code`` in another Django process on the same Redis and files."""
    result = run_python(
        ["-c", f"import django; django.setup(); {code}"],
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_REDIS=redis.url,
        FRESHSTATIC_TEST_STATIC_DIR=str(static),
    )
    assert result.returncode == 0, result.stderr


class Events:
    """The events of a stream, one at a time, read as they come (the stream
    sends a keep-alive comment at least every KEEPALIVE_SECONDS)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.waiting: list[dict[str, Any]] = []

    def until(self, wanted: Any, timeout: float) -> dict[str, Any] | None:
        """The first event ``wanted`` accepts within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            while self.waiting:
                event = self.waiting.pop(0)
                if wanted(event):
                    return event
            if time.monotonic() > deadline:
                return None
            for block in next(self.chunks).decode().split("\n\n"):
                if block.startswith("data: "):
                    self.waiting.append(json.loads(block[len("data: ") :]))


def from_a_rotation(event: dict[str, Any]) -> bool:
    """A change with a generation: not a probe, and not the check a listener
    asks for after it reconnected (one left by an earlier test may)."""
    generation = event.get("generation")
    return (
        event["type"] == "change"
        and bool(generation)
        and not (generation.startswith("probe-"))
    )


def listening(events: Events) -> None:
    """Wait until this process's live listener hears Redis announcements."""
    probes = iter(range(1_000_000))

    def heard_a_probe() -> bool:
        probe = f"probe-{next(probes)}"
        broadcast.announce("default", "freshstatic", probe)
        return events.until(lambda e: e["generation"] == probe, 1) is not None

    wait_for(heard_a_probe, message="the live listener to hear announcements")


@pytest.mark.redis
@pytest.mark.subprocess
def test_a_rotation_announced_by_another_process_reaches_open_streams(
    redis_cache: RedisServer,
    static_tree: StaticTree,
    live_site: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "KEEPALIVE_SECONDS", 0.1)
    static_tree.write("css/site.css", b"h1 { color: blue }")
    response = Client().get(EVENTS)
    events = Events(iter(response.streaming_content))  # type: ignore[arg-type]
    assert events.until(lambda e: e["type"] == "hello", 5)
    listening(events)
    storage = storages["staticfiles"]
    assert ask([relative(storage.url("css/site.css"))]) == {}  # a page asked

    static_tree.write("css/site.css", b"h1 { color: red }")
    later(
        other_process,
        "import freshstatic; freshstatic.invalidate(('css/site.css',))",
        redis_cache,
        static_tree.plain,
    )
    change = events.until(from_a_rotation, 60)
    response.close()
    assert change is not None
    assert change["type"] == "change"
    assert change["names"] is None  # another process's batch: names unknown
    assert change["generation"] == cache.get("freshstatic:generation")
    # The stylesheet a page asked about goes with it, at its new URL.
    assert change["urls"] == {"css/site.css": storage.url("css/site.css")}
    assert "?v=" in change["urls"]["css/site.css"]


@pytest.mark.redis
def test_a_batch_of_this_process_heard_back_over_redis_is_not_repeated(
    redis_cache: RedisServer,
    static_tree: StaticTree,
    live_site: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "KEEPALIVE_SECONDS", 0.1)
    response = Client().get(EVENTS)
    events = Events(iter(response.streaming_content))  # type: ignore[arg-type]
    assert events.until(lambda e: e["type"] == "hello", 5)
    listening(events)

    # This process's batch is announced over Redis and comes back to it,
    # before or after its own signal.
    freshstatic.invalidate(("a.css",))
    broadcast.announce("default", "freshstatic", "end")
    changes = []
    while (event := events.until(lambda e: True, 60)) is not None:
        if event["generation"] == "end":
            break
        if from_a_rotation(event):
            changes.append(event["names"])
    response.close()
    # The names reach the pages; nothing is sent twice.
    assert changes in ([["a.css"]], [None, ["a.css"]])


@pytest.mark.redis
def test_a_question_naming_a_newer_generation_catches_up(
    redis_server: RedisServer, static_tree: StaticTree, live_site: None
) -> None:
    if redis_server.process is None:
        redis_server.start()
    redis_server.command("FLUSHALL")
    static_tree.write("css/site.css", b"h1 { color: blue }")
    storage = storages["staticfiles"]
    # Django's own Redis backend: shared, and rotations are not announced
    # through it (as when an announcement is missed).
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_server.url,
            }
        },
        FRESHSTATIC={"GENERATION_TTL": 300},
    ):
        hash_cache = storage.hash_cache  # type: ignore[attr-defined]

        def settled() -> bool:
            # The generation read by this thread, for the whole TTL (a thread
            # left by an earlier test may hold the read, or ask for another).
            state = hash_cache.refresh()
            return state.generation is not None and state.deadline > time.monotonic()

        wait_for(settled, message="the shared generation to be read")
        old = storage.url("css/site.css")
        static_tree.write("css/site.css", b"h1 { color: red }")
        # Another process started a generation: this one keeps its memo for
        # GENERATION_TTL...
        cache.set("freshstatic:generation", "newer", None)
        assert storage.url("css/site.css") == old
        # ...unless a page names the generation it was told of.
        changed = ask([relative(old)], None, generation="newer")
        assert changed == {relative(old): storage.url("css/site.css")}
    assert changed[relative(old)] != old


# -- under a real ASGI server ----------------------------------------------------------


@pytest.mark.subprocess
def test_under_uvicorn_open_pages_take_no_worker(tmp_path: Path) -> None:
    """
    More open pages than any thread pool of the server has threads: pages
    are still served, and every stream hears the edit.
    """
    import http.client

    site = tmp_path / "site"
    (site / "static" / "css").mkdir(parents=True)
    (site / "templates").mkdir()
    (site / "templates" / "page.html").write_text("<html><body>page</body></html>")
    css = site / "static" / "css" / "site.css"
    css.write_text("h1 { color: blue }")
    port = free_port()
    server = ServerProcess(
        [
            sys.executable, "-m", "uvicorn", "--factory", "--port", str(port),
            "--no-access-log", "django.core.asgi:get_asgi_application",
        ],
        tmp_path / "uvicorn.log",
        cwd=ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings_live",
            LIVE_DIR=str(site),
            LIVE_WATCH="1",
        ),
    )  # fmt: skip
    # asgiref's pool for thread_sensitive=False work has min(32, cores + 4).
    pages = 48
    connections: list[http.client.HTTPConnection] = []

    def connect() -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connections.append(connection)
        return connection

    def next_event(response: http.client.HTTPResponse) -> dict[str, Any]:
        line = response.readline()
        while not line.startswith(b"data: "):
            line = response.readline()
        return json.loads(line[len(b"data: ") :])  # type: ignore[no-any-return]

    try:
        server.wait_output("Watching", timeout=90)
        # Listening: uvicorn binds its socket after the application's start-up.
        server.wait_output("Uvicorn running on", timeout=90)
        streams = []
        for _ in range(pages):
            connection = connect()
            connection.request("GET", EVENTS)
            response = connection.getresponse()
            assert response.status == 200
            streams.append(response)
        for response in streams:
            assert next_event(response)["type"] == "hello"

        # Every stream is open and waiting: a page is still answered.
        connection = connect()
        connection.request("GET", "/")
        page_response = connection.getresponse()
        assert page_response.status == 200
        assert b"data-events=" in page_response.read()  # with the client

        css.write_text("h1 { color: red }")
        for response in streams:
            event = next_event(response)
            assert event["type"] == "change"
            assert event["names"] == ["css/site.css"]
    finally:
        for connection in connections:
            connection.close()
        server.stop()
