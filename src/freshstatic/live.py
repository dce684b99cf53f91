"""
The live page: in development, open pages follow edits to static files.

``FreshStaticMiddleware`` calls in here at two points. ``inject()`` adds the
client, the package's static file ``freshstatic/live.js``, before
``</body>`` of HTML responses; ``handles()`` and ``events()`` answer the
client's two requests under ``STATIC_URL`` (no urls.py entry):

``__freshstatic__/events``
    a Server-Sent Events stream: ``hello`` on connection (this process's
    identity and the cache generation), ``change`` after each batch of
    static changes (the new generation, and the changed names with their
    new URLs when this process knows them), ``reload`` after a template
    changed;
``__freshstatic__/urls``
    given the static URLs a page uses (a POSTed JSON list), those that are
    no longer current, each with its current URL.

A page learns from the stream *that* something changed, then asks which of
its own URLs did. So a stylesheet whose ``url()`` or ``@import`` target
changed is found through the storage (a stylesheet's hash covers its
references), and a change seen by another process sharing the cache
(``watchstatic`` announcing a rotation over Redis) reaches every page,
whichever process served it.

Under WSGI each open stream holds a thread (runserver's threads, gunicorn's
gthread workers); under ASGI it is a coroutine waiting on the event loop,
with no thread held per page.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from time import monotonic
from typing import Any, Literal, overload
from urllib.parse import parse_qs, unquote, urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.core.files.storage import storages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils.html import format_html

from freshstatic import broadcast
from freshstatic.conf import conf
from freshstatic.signals import static_changed
from freshstatic.storage import FreshStaticMixin

logger = logging.getLogger("freshstatic")

# The client, a static file of this package.
SCRIPT_NAME = "freshstatic/live.js"
# The client's two endpoints, under STATIC_URL's path.
ENDPOINT_FOLDER = "__freshstatic__/"
EVENTS_NAME = ENDPOINT_FOLDER + "events"
URLS_NAME = ENDPOINT_FOLDER + "urls"

# A comment sent on an idle stream, so that a closed page is noticed (the
# write fails) and no proxy drops the connection as idle.
KEEPALIVE_SECONDS = 15.0
# A stream ends after this long and the client opens a new one at once: a
# stream whose client vanished unnoticed (Django 4.2 under ASGI does not
# report disconnections) lives no longer than this.
STREAM_MAX_SECONDS = 300.0
# The most names of one batch whose new URLs are sent with the change (a
# build writing thousands of files: pages ask about theirs instead).
MAX_URLS_IN_EVENT = 64
# The stylesheets and scripts pages asked about that this process keeps,
# to send their new URLs with each change.
MAX_USED_NAMES = 64
_SWAPPED_FIRST = (".css", ".js", ".mjs")
# Events waiting for one stream; past this the oldest go (each event makes
# the page ask for all its URLs anyway).
MAX_QUEUED_EVENTS = 32
# Bounds of one question from a page: what a page with thousands of images
# sends, and no more.
URLS_MAX_BODY_BYTES = 1024 * 1024
URLS_MAX_COUNT = 10_000
URL_MAX_CHARS = 2048
# How long a question naming a generation this process has not seen yet
# (announced by another process a moment ago) waits for this process to
# read it from the shared cache.
CATCH_UP_SECONDS = 1.0
CATCH_UP_POLL_SECONDS = 0.005
# How long the Redis listener waits for a message before looking up (to
# notice a changed cache setting), and at most between reconnections.
LISTEN_POLL_SECONDS = 1.0
LISTEN_MAX_BACKOFF_SECONDS = 5.0

# This process's identity: a page whose stream comes back from a process
# with another one (runserver restarted after a Python edit) reloads.
SERVER_ID = secrets.token_hex(8)

_CSP_HEADER = "Content-Security-Policy"
_CSP_REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"
_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/_=-]+)'")
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)


def enabled() -> bool:
    """Whether the live page is on: ``FRESHSTATIC["LIVE"]``, "auto" = DEBUG."""
    live = conf.LIVE
    return bool(settings.DEBUG) if live == "auto" else bool(live)


# -- the middleware's call sites ------------------------------------------------


def handles(request: HttpRequest) -> bool:
    """Whether ``request`` is one of the client's (and the live page is on)."""
    path = request.path
    if ENDPOINT_FOLDER not in path:  # the cheap test, for every request
        return False
    prefix = _static_path()
    return path in (prefix + EVENTS_NAME, prefix + URLS_NAME) and enabled()


@overload
def events(
    request: HttpRequest, *, asynchronous: Literal[False] = ...
) -> HttpResponseBase: ...
@overload
def events(
    request: HttpRequest, *, asynchronous: Literal[True]
) -> Coroutine[Any, Any, HttpResponseBase]: ...
@overload
def events(
    request: HttpRequest, *, asynchronous: bool
) -> HttpResponseBase | Coroutine[Any, Any, HttpResponseBase]: ...
def events(
    request: HttpRequest, *, asynchronous: bool = False
) -> HttpResponseBase | Coroutine[Any, Any, HttpResponseBase]:
    """
    The response to a request ``handles()`` accepted: the event stream, or
    the answer to a page's question about its URLs.

    With ``asynchronous=True`` (a request handled under ASGI) this returns
    a coroutine: the stream is then an asynchronous iterator that holds no
    thread while it waits, and whatever may touch a file or the cache runs
    in a thread, off the event loop.
    """
    if asynchronous:
        return _events_async(request)
    if request.path.endswith(EVENTS_NAME):
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        subscriber = _Subscriber(None)
        _hub.subscribe(subscriber)
        return _stream_response(_sync_stream(subscriber, _hello()))
    return _urls_response(request)


async def _events_async(request: HttpRequest) -> HttpResponseBase:
    if request.path.endswith(EVENTS_NAME):
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        subscriber = _Subscriber(asyncio.get_running_loop())
        # Subscribed before the hello is read: a change in between is sent
        # after it, never lost.
        _hub.subscribe(subscriber)
        try:
            hello = await sync_to_async(_hello, thread_sensitive=False)()
        except BaseException:
            _hub.unsubscribe(subscriber)
            raise
        return _stream_response(_async_stream(subscriber, hello))
    return await sync_to_async(_urls_response, thread_sensitive=False)(request)


def inject(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """
    Add the client before the last ``</body>`` of an HTML response (with
    the request's CSP nonce, and a correct ``Content-Length``); any other
    response is returned as it is.
    """
    if not _injectable(response) or not enabled():
        return response
    assert isinstance(response, HttpResponse)
    content = response.content
    end = None
    for end in _BODY_END.finditer(content):  # the last one  # noqa: B007
        pass
    if end is None:
        return response
    tag = script_tag(request, response).encode(response.charset or "utf-8")
    response.content = content[: end.start()] + tag + content[end.start() :]
    if "Content-Length" in response:
        response["Content-Length"] = str(len(response.content))
    return response


async def ainject(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """``inject()`` for the asynchronous path: anything that may read a
    file (the client's hash, at first) runs in a thread."""
    if not _injectable(response) or not enabled():
        return response
    return await sync_to_async(inject, thread_sensitive=False)(request, response)


def _injectable(response: HttpResponseBase) -> bool:
    if response.streaming or not isinstance(response, HttpResponse):
        return False
    content_type = response.get("Content-Type", "")
    return (
        content_type.split(";", 1)[0].strip().lower() == "text/html"
        and response.status_code not in (204, 304)
        and not response.get("Content-Encoding")
        and not response.get("Content-Disposition", "").startswith("attachment")
    )


def script_tag(request: HttpRequest, response: HttpResponseBase) -> str:
    """The ``<script>`` element that loads the client into this page."""
    storage = storages["staticfiles"]
    try:
        src = storage.url(SCRIPT_NAME)
    except ValueError:  # STRICT, and the package's file is gone
        src = settings.STATIC_URL + SCRIPT_NAME
    prefix = _static_path()
    policy = _policy(response)
    # The page's policy says which nonce scripts need. Without a policy yet
    # (a CSP middleware that runs after this one builds it), the request's
    # nonce is read now, so that the policy will include it.
    nonce = _request_nonce(request) if policy is None else _nonce_in(policy)
    attributes = [
        ("src", src),
        ("data-events", prefix + EVENTS_NAME),
        ("data-urls", prefix + URLS_NAME),
        ("data-static", settings.STATIC_URL),
        ("data-generation", _known_generation() or ""),
    ]
    if policy is not None and not _allows_worker(policy):
        # One stream per page then, without the shared worker the policy
        # would refuse (and report in the console).
        attributes.append(("data-worker", "no"))
    if nonce:
        attributes.append(("nonce", nonce))
    return "".join(
        [
            "<script",
            *(format_html(' {}="{}"', name, value) for name, value in attributes),
            " defer></script>",
        ]
    )


# -- the event stream -------------------------------------------------------------


def _hello() -> bytes:
    return _event("hello", server=SERVER_ID, generation=_current_generation())


def _event(kind: str, **data: Any) -> bytes:
    return f"data: {json.dumps({'type': kind, **data})}\n\n".encode()


_KEEPALIVE = b": keep-alive\n\n"


def _stream_response(
    stream: Iterator[bytes] | AsyncIterator[bytes],
) -> HttpResponseBase:
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-store, no-transform"
    # nginx would otherwise hold the events back until its buffer fills.
    response["X-Accel-Buffering"] = "no"
    return response


def _sync_stream(subscriber: _Subscriber, hello: bytes) -> Iterator[bytes]:
    # Closed by the server when the page goes (a write fails) or the
    # stream ends: either way the subscription ends with it.
    try:
        yield hello
        ends = monotonic() + STREAM_MAX_SECONDS
        while (remaining := ends - monotonic()) > 0:
            waiting = subscriber.wait(min(KEEPALIVE_SECONDS, remaining))
            yield b"".join(waiting) if waiting else _KEEPALIVE
    finally:
        _hub.unsubscribe(subscriber)


async def _async_stream(subscriber: _Subscriber, hello: bytes) -> AsyncIterator[bytes]:
    try:
        yield hello
        ends = monotonic() + STREAM_MAX_SECONDS
        while (remaining := ends - monotonic()) > 0:
            waiting = await subscriber.await_events(min(KEEPALIVE_SECONDS, remaining))
            yield b"".join(waiting) if waiting else _KEEPALIVE
    finally:
        _hub.unsubscribe(subscriber)


class _Subscriber:
    """
    One open stream: the events waiting for it, and how to wake it, from
    whichever thread publishes (the watcher's, the Redis listener's, the
    autoreloader's): a threading.Event for a stream served by a thread, the
    event loop for one served asynchronously.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._events: deque[bytes] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._lock = threading.Lock()
        self._loop = loop
        self._ready = threading.Event()
        self._async_ready = asyncio.Event() if loop is not None else None

    def put(self, event: bytes) -> None:
        with self._lock:
            self._events.append(event)
        if self._loop is None or self._async_ready is None:
            self._ready.set()
            return
        # A closed loop: the stream is over.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._async_ready.set)

    def _take(self) -> list[bytes]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def wait(self, timeout: float) -> list[bytes]:
        """The events that came within ``timeout`` seconds (or none)."""
        if self._ready.wait(timeout):
            # Cleared before taking: an event put meanwhile sets it again.
            self._ready.clear()
        return self._take()

    async def await_events(self, timeout: float) -> list[bytes]:
        assert self._async_ready is not None
        try:
            await asyncio.wait_for(self._async_ready.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        else:
            self._async_ready.clear()
        return self._take()


class _Hub:
    """
    The open streams of this process, and what feeds them: the
    ``static_changed`` signal, announcements of other processes' rotations
    over Redis, and the autoreloader's template changes. Nothing is
    connected or started until the first page opens a stream.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._listeners: dict[tuple[str, str], threading.Thread] = {}
        # The last change sent, so that one batch heard twice (this
        # process's own rotation comes back over Redis) is sent once.
        self._last_change: tuple[str | None, tuple[str, ...] | None] | None = None

    def subscribe(self, subscriber: _Subscriber) -> None:
        with self._lock:
            self._subscribers.add(subscriber)
        _connect_receivers()
        self._listen()

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def count(self) -> int:
        """How many streams are open in this process."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: bytes) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.put(event)

    def changed(
        self,
        generation: str | None,
        names: tuple[str, ...] | None,
        urls: dict[str, str] | None = None,
    ) -> None:
        """Send a ``change``: the new generation, the names of the batch when
        known, and the new URLs of those names when this process has them."""
        with self._lock:
            last = self._last_change
            if (
                generation is not None
                and last is not None
                and last[0] == generation
                and (names is None or last[1] == names)
            ):
                return  # already sent (with the names, when they were known)
            self._last_change = (generation, names)
        self.publish(
            _event(
                "change",
                generation=generation,
                names=None if names is None else list(names),
                urls=urls,
            )
        )

    def _listen(self) -> None:
        """With Redis, hear the rotations of other processes (watchstatic)."""
        storage = _fresh_storage()
        if storage is None:
            return
        key = (storage.cache_alias, storage.key_prefix)
        try:
            redis = broadcast.supports(caches[key[0]])
        except Exception:  # an unknown alias: E002 says so
            return
        if not redis:
            return
        with self._lock:
            thread = self._listeners.get(key)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(
                target=_listen_for_rotations,
                args=key,
                name=f"freshstatic-live-{key[0]}",
                daemon=True,
            )
            self._listeners[key] = thread
            thread.start()

    def _forget_after_fork(self) -> None:
        # No stream and no thread survives fork(): start afresh.
        self._lock = threading.Lock()
        self._subscribers = set()
        self._listeners = {}
        self._last_change = None
        _used._lock = threading.Lock()


_hub = _Hub()


def open_streams() -> int:
    """How many pages this process is streaming events to."""
    return _hub.count()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_hub._forget_after_fork)


# -- what feeds the streams ---------------------------------------------------------


def _connect_receivers() -> None:
    # Idempotent (dispatch_uid); connected at the first stream, so that a
    # process serving no live page runs none of this.
    static_changed.connect(_on_static_changed, dispatch_uid="freshstatic-live")
    try:
        from django.utils.autoreload import file_changed
    except ImportError:  # pragma: no cover - every supported Django has it
        return
    file_changed.connect(_on_file_changed, dispatch_uid="freshstatic-live")


def _on_static_changed(
    sender: object, names: tuple[str, ...] | None = None, **kwargs: Any
) -> None:
    # Runs in the watcher's thread, right after the rotation: whatever goes
    # wrong is logged here, never raised into the watcher.
    try:
        batch = None if names is None else tuple(names)
        storage = _fresh_storage()
        generation = None
        urls = None
        if storage is not None:
            generation = _generation(storage)
            urls = _new_urls(storage, batch)
        _hub.changed(generation, batch, urls)
    except Exception:
        logger.exception("Telling live pages about a static change failed.")


def _new_urls(
    storage: FreshStaticMixin, names: tuple[str, ...] | None
) -> dict[str, str] | None:
    """
    New URLs to send with a change, for pages to swap at once (they ask
    about the rest): those of the batch's names (unless the batch is too
    large to send whole), and those of the stylesheets and scripts pages
    asked about whose URL changed with them (a stylesheet whose image
    changed; any, after another process's rotation).
    """
    urls = _used.changed(storage)
    if names is not None and len(names) <= MAX_URLS_IN_EVENT:
        for name in names:
            try:
                urls[name] = storage.url(name)
            except ValueError:  # STRICT, and the file is gone
                continue
    return urls or None


class _Used:
    """
    The stylesheets and scripts that pages of this process asked about, with
    the URL each had then: at most MAX_USED_NAMES, the least recently asked
    about out first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: OrderedDict[str, str] = OrderedDict()

    def saw(self, name: str, url: str) -> None:
        if not name.endswith(_SWAPPED_FIRST) or len(name) > URL_MAX_CHARS:
            return
        with self._lock:
            self._urls[name] = url
            self._urls.move_to_end(name)
            while len(self._urls) > MAX_USED_NAMES:
                self._urls.popitem(last=False)

    def changed(self, storage: FreshStaticMixin) -> dict[str, str]:
        """The names whose URL is not the one pages had, with the new one."""
        with self._lock:
            known = list(self._urls.items())
        changed = {}
        for name, url in known:
            try:
                current = storage.url(name)
            except ValueError:  # STRICT, and the file is gone
                continue
            if current != url:
                changed[name] = current
        with self._lock:
            for name, url in changed.items():
                if name in self._urls:
                    self._urls[name] = url
        return changed

    def forget(self) -> None:
        with self._lock:
            self._urls.clear()


_used = _Used()


def forget() -> None:
    """Forget the stylesheets and scripts pages asked about (tests)."""
    _used.forget()


def _on_file_changed(sender: object, file_path: Path, **kwargs: Any) -> None:
    """
    The autoreloader saw ``file_path`` change (runserver, in the process
    that serves): a template, and open pages reload. Returns None, so that
    Django's own receivers alone decide whether the server restarts.
    """
    try:
        path = Path(file_path)
        if path.suffix == ".py":
            return  # the server restarts; pages reload on its new identity
        from django.template.autoreload import get_template_directories

        if any(folder in path.parents for folder in get_template_directories()):
            _hub.publish(_event("reload", reason="template", name=path.name))
    except Exception:
        logger.exception("Telling live pages about a template change failed.")


def _listen_for_rotations(alias: str, prefix: str) -> None:
    """
    The Redis listener of this process (a daemon thread): each rotation
    announced on ``<prefix>:rotated`` (by ``watchstatic``, by another
    worker's watcher, by ``hashstatic --rotate``) is a change whose names
    this process does not know.
    """
    from django_redis import get_redis_connection

    backoff = 0.25
    waiting = threading.Event()  # never set: a wait that wakes on time only
    reconnecting = False
    while _still_redis(alias):
        try:
            pubsub = get_redis_connection(alias).pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(broadcast.channel(prefix))
                if reconnecting:
                    # A rotation may have been announced while Redis was away.
                    _hub.changed(None, None)
                reconnecting = True
                backoff = 0.25
                while _still_redis(alias):
                    message = pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        data = message.get("data")
                        generation = (
                            data.decode(errors="replace")
                            if isinstance(data, bytes)
                            else str(data)
                        )
                        _rotated(generation)
            finally:
                pubsub.close()
        except Exception as exc:  # Redis down: try again soon
            logger.debug("Listening for live changes on %r failed: %s", alias, exc)
        waiting.wait(backoff)
        backoff = min(backoff * 2, LISTEN_MAX_BACKOFF_SECONDS)


def _rotated(generation: str) -> None:
    """Another process started ``generation``: which names changed, this
    one cannot know, but it sends the new URLs of those pages asked about."""
    urls = None
    storage = _fresh_storage()
    if storage is not None:
        try:
            _catch_up(storage, generation)
            urls = _new_urls(storage, None)
        except Exception:
            logger.exception("Telling live pages about a rotation failed.")
    _hub.changed(generation, None, urls)


def _still_redis(alias: str) -> bool:
    try:
        return broadcast.supports(caches[alias])
    except Exception:
        return False


# -- the page's question: which of my URLs changed? ----------------------------------


def _urls_response(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if len(request.body) > URLS_MAX_BODY_BYTES:
        return HttpResponse(status=413)
    try:
        question = json.loads(request.body)
        urls = question["urls"]
        names = question.get("names")
        generation = question.get("generation")
    except (ValueError, TypeError, KeyError):
        return HttpResponseBadRequest("Expected {'urls': [...]}.")
    if (
        not _strings(urls)
        or not (names is None or _strings(names))
        or not (generation is None or isinstance(generation, str))
    ):
        return HttpResponseBadRequest("Expected lists of short strings.")
    storage = _fresh_storage()
    changed = {} if storage is None else changed_urls(storage, urls, names, generation)
    response = JsonResponse({"changed": changed})
    response["Cache-Control"] = "no-store"
    return response


def _strings(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= URLS_MAX_COUNT
        and all(isinstance(item, str) and len(item) <= URL_MAX_CHARS for item in value)
    )


def changed_urls(
    storage: FreshStaticMixin,
    urls: list[str],
    names: list[str] | None,
    generation: str | None,
) -> dict[str, str]:
    """
    Of ``urls`` (static URLs relative to ``STATIC_URL``, as a page has
    them), those that are not current in ``storage``, each with its current
    URL.

    A URL that carries a version is compared with the current one. A URL
    without one (written by hand, or a module's unversioned ``import``) is
    changed if its name is among ``names``, the names of the batch.
    ``generation`` is the generation the page was told of: this process
    catches up with it first, if another process announced it a moment ago.
    """
    if generation:
        _catch_up(storage, generation)
    epoch = storage.hash_cache.state.generation
    batch = None if names is None else set(names)
    changed = {}
    for relative in dict.fromkeys(urls):
        name, version = _split(storage, relative, epoch)
        if not name:
            continue
        if version is None and (batch is None or name not in batch):
            continue
        current = storage.url(name)
        _current_name, current_version = _split(storage, _relative(current), epoch)
        if version is None or current_version != version:
            changed[relative] = current
        if version is not None:
            _used.saw(name, current)
    return changed


def _split(
    storage: FreshStaticMixin, relative: str, epoch: str | None
) -> tuple[str, str | None]:
    """A URL relative to STATIC_URL as (static name, version or None)."""
    path, _, query = relative.partition("#")[0].partition("?")
    version = parse_qs(query).get(storage.query_param, [None])[-1]
    name, version = storage.served_files.requested(unquote(path), version, epoch)
    return name, version


def _relative(url: str) -> str:
    static_url = settings.STATIC_URL
    if url.startswith(static_url):
        return url[len(static_url) :]
    prefix = _static_path()
    path = url if url.startswith("/") else urlsplit(url).path
    return path[len(prefix) :] if path.startswith(prefix) else path


def _catch_up(storage: FreshStaticMixin, generation: str) -> None:
    """
    Make this process read the shared generation again if it has not seen
    ``generation``: the page heard of it from a process whose
    announcement this one may not have received yet.
    """
    hash_cache = storage.hash_cache
    if hash_cache.refresh().generation == generation:
        return
    deadline = monotonic() + CATCH_UP_SECONDS
    pause = threading.Event()  # never set
    while True:
        hash_cache.recheck()
        state = hash_cache.refresh()
        # A positive deadline: the generation was read just now (whatever
        # it is, it is at least as new as the one announced).
        if state.generation == generation or state.deadline > 0:
            return
        if monotonic() > deadline:
            return
        pause.wait(CATCH_UP_POLL_SECONDS)  # another thread is reading it


# -- helpers ----------------------------------------------------------------------


def _fresh_storage() -> FreshStaticMixin | None:
    storage = storages["staticfiles"]
    return storage if isinstance(storage, FreshStaticMixin) else None


def _current_generation() -> str | None:
    storage = _fresh_storage()
    return None if storage is None else _generation(storage)


def _generation(storage: FreshStaticMixin) -> str | None:
    """
    The storage's current generation. Right after a rotation another thread
    may be reading it: wait for that read (briefly), rather than answer
    None. None if the cache did not say (it is failing).
    """
    hash_cache = storage.hash_cache
    deadline = monotonic() + CATCH_UP_SECONDS
    pause = threading.Event()  # never set
    while True:
        state = hash_cache.refresh()
        # A positive deadline: read, whatever it said.
        if state.generation is not None or state.deadline > 0:
            return state.generation
        if monotonic() > deadline:
            return None
        pause.wait(CATCH_UP_POLL_SECONDS)


def _known_generation() -> str | None:
    """The generation this process last read, without reading it again."""
    storage = _fresh_storage()
    return None if storage is None else storage.hash_cache.state.generation


def _static_path() -> str:
    """STATIC_URL's path ("/static/"), where the client's requests go."""
    path = urlsplit(settings.STATIC_URL or "/").path or "/"
    return path if path.endswith("/") else path + "/"


def _policy(response: HttpResponseBase) -> dict[str, list[str]] | None:
    """The response's enforced Content-Security-Policy, by directive."""
    header = response.get(_CSP_HEADER)
    if header is None:
        return None
    policy: dict[str, list[str]] = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        if name and name.lower() not in policy:  # the first one counts
            policy[name.lower()] = values if values else []
    return policy


def _directive(policy: dict[str, list[str]], *names: str) -> list[str] | None:
    for name in names:
        if name in policy:
            return policy[name]
    return None


def _nonce_in(policy: dict[str, list[str]] | None) -> str | None:
    if policy is None:
        return None
    sources = _directive(policy, "script-src-elem", "script-src", "default-src")
    for source in sources or ():
        match = _NONCE.fullmatch(source)
        if match:
            return match[1]
    return None


def _allows_worker(policy: dict[str, list[str]]) -> bool:
    """Whether the policy lets the page start a same-origin shared worker."""
    own = _directive(policy, "worker-src", "child-src")
    if own is not None:
        return "'self'" in own or "*" in own
    sources = _directive(policy, "script-src", "default-src")
    if sources is None:
        return True
    # 'strict-dynamic' makes the browser ignore 'self' for scripts.
    return ("'self'" in sources or "*" in sources) and "'strict-dynamic'" not in sources


def _request_nonce(request: HttpRequest) -> str | None:
    """
    The request's CSP nonce: Django 6's (``django.middleware.csp``) or
    django-csp's ``request.csp_nonce``. Read now, so that a CSP middleware
    that builds its header after this one includes it.
    """
    nonce: object = None
    try:
        django_csp = importlib.import_module("django.middleware.csp")
    except ImportError:
        django_csp = None
    if django_csp is not None:
        nonce = django_csp.get_nonce(request)
    if nonce is None:
        nonce = getattr(request, "csp_nonce", None)
    return str(nonce) if nonce is not None else None
