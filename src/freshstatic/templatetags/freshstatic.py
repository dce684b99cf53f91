"""
``{% load freshstatic %}``: whole tags for a modern page.

- ``{% importmap %}``: a ``<script type="importmap">`` that maps the URL of
  every static module, and each bare specifier of ``FRESHSTATIC
  ["IMPORTMAP"]``, to its current ``?v=`` URL, with an ``integrity`` map.
- ``{% modulepreload "js/app.js" %}``: a ``<link rel="modulepreload">`` for
  the module and for each module it statically imports, transitively.
- ``{% stylesheet "css/site.css" %}`` and ``{% script "js/app.js" module %}``.

``integrity`` is the SHA-256 of the exact bytes served for the URL (a
stylesheet as the middleware rewrites it; a module's own bytes, whose URL's
version also covers its imports), written when ``FRESHSTATIC["INTEGRITY"]``
says so. Every tag carries the request's CSP nonce when the
request has one (Django 6's ``ContentSecurityPolicyMiddleware`` or
django-csp).

What the tags learn is kept per storage for as long as its hash cache's state
lasts (a generation: a change to any static file replaces it), so that a warm
render costs a few dict lookups. What is read from a file's bytes (their
integrity, the module's imports) is kept by the digest of the version
served, which names those bytes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import re
import weakref
from collections.abc import Callable, Iterable
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from django import template
from django.apps import apps
from django.core.files.storage import storages
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

from freshstatic import locations, modules
from freshstatic.conf import conf, integrity_enabled
from freshstatic.log import warn_once
from freshstatic.served import BoundedCache, is_module
from freshstatic.storage import FreshStaticMixin

if TYPE_CHECKING:
    from django.core.files.storage import Storage
    from django.template.base import FilterExpression, Parser, Token
    from django.template.context import Context

    from freshstatic.cache import State

_T = TypeVar("_T")

register = template.Library()

# Apps whose static files are classic scripts no page imports (the admin's
# jQuery plugins and their 60 translations, the live page's script): the
# import map leaves them out.
UNLISTED_APPS = ("django.contrib.", "freshstatic")
# A file larger than this gets no integrity, and its imports are not read.
READ_MAX_BYTES = 16 * 1024 * 1024
# What one storage's memo of tags may take while a generation lasts (names
# can come from template variables, so there may be any number of them); past
# it, the names are forgotten all at once.
PAGE_MEMO_MAX_BYTES = 4 * 1024 * 1024
# What the integrity values and import lists read from bytes may take, each;
# the least recently used go first.
FACTS_MAX_BYTES = 2 * 1024 * 1024
# An entry's own cost beside its characters.
_ENTRY_OVERHEAD_BYTES = 200
# Inside <script>, JSON must not close the element or open a comment.
_SCRIPT_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_:][-A-Za-z0-9_:.]*\Z")


def _facts_cost(value: str | tuple[str, ...]) -> int:
    if isinstance(value, str):
        return len(value) + _ENTRY_OVERHEAD_BYTES
    return sum(len(item) + 60 for item in value) + _ENTRY_OVERHEAD_BYTES


# By (hash algorithm, digest of the version served): what its bytes are.
_integrities: BoundedCache[str] = BoundedCache(FACTS_MAX_BYTES, _facts_cost)
_specifiers: BoundedCache[tuple[str, ...]] = BoundedCache(FACTS_MAX_BYTES, _facts_cost)
# The memo of each storage, for its current state.
_pages: weakref.WeakKeyDictionary[Storage, _Page] = weakref.WeakKeyDictionary()


def _reset_after_fork() -> None:
    for cache in (_integrities, _specifiers):
        cache.reset_lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


def subresource_integrity(data: bytes) -> str:
    """The ``integrity`` value of ``data``: ``sha256-<base64 of the digest>``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def _static_imports(data: bytes) -> tuple[str, ...]:
    return tuple(modules.static_imports(data.decode("utf-8", "surrogateescape")))


class _Page:
    """
    What the tags found for one storage while one state of its hash cache
    lasts: each name's URL and integrity, module graphs, the import map.
    """

    def __init__(self, storage: Storage, state: State | None, integrity: bool) -> None:
        self.storage = storage
        self.state = state
        # None: a storage without content hashes, nothing kept.
        self.epoch = None if state is None else state.generation
        self.integrity = integrity
        self.bare = conf.IMPORTMAP
        self.assets: dict[str, tuple[str, str | None]] = {}
        self.closures: dict[str, tuple[str, ...]] = {}
        # What each tag writes around its nonce, by tag and names.
        self.tags: dict[tuple[object, ...], tuple[tuple[str, str], ...]] = {}
        self.bytes = 0
        self.import_map: tuple[str, str] | None = None

    def _remember(self, cost: int) -> None:
        self.bytes += cost
        if self.bytes > PAGE_MEMO_MAX_BYTES:
            self.assets = {}
            self.closures = {}
            self.tags = {}
            self.bytes = cost

    # -- one name ----------------------------------------------------------------

    def asset(self, name: str) -> tuple[str, str | None]:
        """The URL of ``name`` and, when integrity is on, its integrity."""
        found = self.assets.get(name)
        if found is None:
            url = self.storage.url(name)
            integrity = (
                self._read(name, _integrities, subresource_integrity)
                if self.integrity
                else None
            )
            found = (url, integrity)
            self._remember(len(name) + len(url) + _ENTRY_OVERHEAD_BYTES)
            self.assets[name] = found
        return found

    def _read(
        self, name: str, cache: BoundedCache[_T], learn: Callable[[bytes], _T]
    ) -> _T | None:
        """
        What ``learn`` makes of the bytes served for ``name``, kept by their
        digest: read once per version of the file, however many pages ask.
        None for a file with no bytes to read (missing, outside the static
        locations, too large) or a storage without content hashes.
        """
        if self.state is None or not isinstance(self.storage, FreshStaticMixin):
            return None
        files = self.storage.served_files
        clean = locations.clean_name(name.partition("#")[0].partition("?")[0])
        if clean is None:
            return None
        try:
            served = files.open(clean, self.epoch)
            if served is None:
                return self._read_remote(clean, cache, learn)
            try:
                kept = cache.get((files.algorithm, served.digest))
                if kept is not None:
                    return kept
                if served.size > READ_MAX_BYTES:
                    warn_once(
                        f"{clean}\0too big to read",
                        "Static file %r is larger than %d bytes: its tags carry "
                        "no integrity and its imports are not preloaded.",
                        clean,
                        READ_MAX_BYTES,
                    )
                    return None
                data = served.read()
                value = learn(data)
                # By the digest of the bytes read (read() makes it theirs).
                cache.put((files.algorithm, served.digest), value)
                return value
            finally:
                served.close()
        except OSError:
            return None  # missing now, or outside the static locations: url() says
        except Exception as exc:  # a page must never fail because of a file
            warn_once(
                f"{clean}\0read for tags",
                "Static file %r could not be read (%s: %s); its tags carry no "
                "integrity.",
                clean,
                type(exc).__name__,
                exc,
            )
            return None

    def _read_remote(
        self, name: str, cache: BoundedCache[_T], learn: Callable[[bytes], _T]
    ) -> _T | None:
        """``_read()`` for a storage that serves the file itself (S3...)."""
        assert isinstance(self.storage, FreshStaticMixin)
        files = self.storage.served_files
        version = files.version(name, self.epoch)
        if version is None or version.path:
            return None  # nothing served, or a local file not served (ignored)
        kept = cache.get((files.algorithm, version.digest))
        if kept is not None:
            return kept
        with self.storage.open(name, "rb") as stream:
            data = stream.read(READ_MAX_BYTES + 1)
        if len(data) > READ_MAX_BYTES:
            return None
        value = learn(data)
        cache.put(
            (files.algorithm, hashlib.new(files.algorithm, data).hexdigest()), value
        )
        return value

    # -- modules -----------------------------------------------------------------

    def closure(self, name: str) -> tuple[str, ...]:
        """``name`` and the static modules it imports, transitively."""
        found = self.closures.get(name)
        if found is None:
            found = tuple(modules.closure([name], self.module_imports))
            self._remember(sum(len(item) + 60 for item in found))
            self.closures[name] = found
        return found

    def module_imports(self, name: str) -> list[str]:
        """The static modules module ``name`` loads with it (not by import())."""
        if not is_module(name) or not isinstance(self.storage, FreshStaticMixin):
            return []
        specifiers = self._read(name, _specifiers, _static_imports)
        files = self.storage.served_files
        found = []
        for specifier in specifiers or ():
            target = self.target(name, specifier)
            if (
                target is not None
                and is_module(target)
                and not files.is_ignored(target)
                and files.resolve(target, self.epoch) is not None
            ):
                found.append(target)
        return found

    def target(self, importer: str, specifier: str) -> str | None:
        """The static name ``specifier`` in module ``importer`` points at."""
        assert isinstance(self.storage, FreshStaticMixin)
        return self.storage.served_files.module_target(importer, specifier, self.bare)

    # -- the import map ----------------------------------------------------------

    def import_map_json(self) -> str:
        """The import map, as JSON safe inside ``<script>``."""
        return self.import_map_parts()[1][1 : -len("</script>")]

    def import_map_parts(self) -> tuple[str, str]:
        """The ``{% importmap %}`` element, before and after its nonce."""
        if self.import_map is None:
            # "<", ">" and "&" are escaped in the JSON: it cannot leave the
            # element.
            self.import_map = (
                '<script type="importmap"',
                f">{self._build_import_map()}</script>",
            )
        return self.import_map

    def keep_tag(
        self, key: tuple[object, ...], parts: tuple[tuple[str, str], ...]
    ) -> None:
        self._remember(sum(len(head) + len(close) for head, close in parts))
        self.tags[key] = parts

    def _build_import_map(self) -> str:
        imports: dict[str, str] = {}
        integrity: dict[str, str] = {}
        names = self._module_names()

        def add(key: str, name: str) -> None:
            url, value = self.asset(name)
            imports[key] = url
            if value is not None:
                integrity[url] = value

        for specifier, target in self.bare.items():
            if modules.is_url(target):
                imports[specifier] = target
            elif specifier.endswith("/"):
                folder = f"{locations.clean_name(target.rstrip('/'))}/"
                for name in names:
                    if name.startswith(folder):
                        add(specifier + name[len(folder) :], name)
                # Anything else under it: as it is.
                imports[specifier] = _plain_url(self.storage, folder)
            else:
                add(specifier, locations.clean_name(target) or target)
        for name in names:
            add(_plain_url(self.storage, name), name)
        data: dict[str, dict[str, str]] = {"imports": imports}
        if integrity:
            data["integrity"] = integrity
        return json.dumps(data, separators=(",", ":")).translate(_SCRIPT_ESCAPES)

    def _module_names(self) -> list[str]:
        if self.state is None or not isinstance(self.storage, FreshStaticMixin):
            return []  # not a storage whose URLs carry hashes: bare names only
        files = self.storage.served_files
        unlisted = _unlisted_folders()
        return sorted(
            name
            for name in locations.all_names(self.storage)
            if is_module(name)
            and not name.startswith(unlisted)
            and not files.is_ignored(name)
        )


def _unlisted_folders() -> tuple[str, ...]:
    """The static folders (``admin/``...) of the apps in UNLISTED_APPS."""
    folders: list[str] = []
    for config in apps.get_app_configs():
        if config.name.startswith(UNLISTED_APPS):
            static = os.path.join(config.path, "static")
            if os.path.isdir(static):
                folders.extend(f"{entry}/" for entry in sorted(os.listdir(static)))
    return tuple(folders)


def _plain_url(storage: Storage, name: str) -> str:
    """The URL of ``name`` without its version: what imports resolve to."""
    if isinstance(storage, FreshStaticMixin):
        return str(super(FreshStaticMixin, storage).url(name))
    return str(storage.url(name))


def _page() -> _Page:
    """The memo of the static files storage, for its current state."""
    storage = storages["staticfiles"]
    integrity = integrity_enabled()
    if not isinstance(storage, FreshStaticMixin):
        return _Page(storage, None, False)
    hash_cache = storage.hash_cache
    state = hash_cache.state
    if state.deadline <= monotonic():
        state = hash_cache.refresh()
    page = _pages.get(storage)
    if page is None or page.state is not state or page.integrity is not integrity:
        page = _Page(storage, state, integrity)
        _pages[storage] = page
    return page


# -- the CSP nonce ----------------------------------------------------------------


def _django_get_nonce() -> Callable[[Any], Any] | None:
    try:  # Django 6.0+
        csp = importlib.import_module("django.middleware.csp")
    except ImportError:
        return None
    return getattr(csp, "get_nonce", None)


_get_nonce = _django_get_nonce()


def csp_nonce(context: Context) -> str | None:
    """
    The request's CSP nonce: the ``csp_nonce`` context variable (Django 6's
    context processor), else ``request.csp_nonce`` (django-csp), else Django
    6's middleware's. A lazy nonce is generated here: the tag uses it, so the
    response's policy must name it.
    """
    nonce = context.get("csp_nonce")
    if nonce is None:
        request = getattr(context, "request", None) or context.get("request")
        if request is not None:
            nonce = getattr(request, "csp_nonce", None)
            if nonce is None and _get_nonce is not None:
                nonce = _get_nonce(request)
    if nonce is None:
        return None
    return str(nonce) or None


# -- writing tags -----------------------------------------------------------------

Attributes = list[tuple[str, object]]


def _html_attributes(attributes: Attributes) -> SafeString:
    """
    `` name="value"`` for each, the value escaped as Django escapes variables
    (a safe string goes as it is); True: the name alone; None or False: left
    out. Names were checked when the template was parsed.
    """
    parts = []
    for name, value in attributes:
        if value is None or value is False:
            continue
        if value is True:
            parts.append(f" {name}")
        else:
            parts.append(f' {name}="{conditional_escape(str(value))}"')
    return mark_safe("".join(parts))  # noqa: S308 (every value escaped)


def _merged(computed: Attributes, extra: Attributes) -> Attributes:
    """``computed``, with the template's own values in their place, then the
    rest of the template's."""
    given = dict(extra)
    merged = [(name, given.pop(name, value)) for name, value in computed]
    return merged + [(name, value) for name, value in extra if name in given]


def _cross_origin(url: str) -> bool:
    """Whether ``url`` may be on another origin (a CDN's ``STATIC_URL``)."""
    return url.startswith(("http://", "https://", "//"))


class _Tag:
    """A parsed ``{% tag name… flags… attribute=value… %}``."""

    def __init__(
        self,
        parser: Parser,
        token: Token,
        *,
        flags: Iterable[str] = (),
        reserved: Iterable[str] = (),
        many: bool = False,
    ) -> None:
        bits = token.split_contents()
        self.tag = bits[0]
        self.names: list[FilterExpression] = []
        self.flags: set[str] = set()
        self.attributes: list[tuple[str, FilterExpression]] = []
        allowed_flags = set(flags)
        reserved = set(reserved)
        for bit in bits[1:]:
            attribute, equals, value = bit.partition("=")
            if equals and _ATTRIBUTE_NAME.match(attribute):
                attribute = attribute.lower()
                if attribute in reserved:
                    raise template.TemplateSyntaxError(
                        f"{{% {self.tag} %}} writes {attribute!r} itself."
                    )
                if any(attribute == seen for seen, _value in self.attributes):
                    raise template.TemplateSyntaxError(
                        f"{{% {self.tag} %}} got {attribute!r} twice."
                    )
                self.attributes.append((attribute, parser.compile_filter(value)))
            elif self.names and bit in allowed_flags:
                self.flags.add(bit)
            elif not self.names or many:
                self.names.append(parser.compile_filter(bit))
            else:
                options = ", ".join(sorted(allowed_flags)) or "none"
                raise template.TemplateSyntaxError(
                    f"{{% {self.tag} %}} takes one static name, then options "
                    f"({options}) and attributes (name=value), not {bit!r}."
                )
        if not self.names:
            raise template.TemplateSyntaxError(
                f"{{% {self.tag} %}} needs a static name, e.g. "
                f'{{% {self.tag} "js/app.js" %}}.'
            )

    def resolve(self, context: Context) -> tuple[list[str], Attributes]:
        names = [str(name.resolve(context)) for name in self.names]
        extra = [(key, value.resolve(context)) for key, value in self.attributes]
        return [name for name in names if name], extra


# One element: its name, its attributes (the nonce comes after them) and
# what closes it.
Element = tuple[str, Attributes, str]


class _AssetNode(template.Node):
    """A tag written for static names: its elements, kept per generation."""

    def __init__(self, tag: _Tag) -> None:
        self.tag_spec = tag

    def elements(self, page: _Page, names: list[str]) -> list[Element]:
        raise NotImplementedError

    def render(self, context: Context) -> str:
        names, extra = self.tag_spec.resolve(context)
        if not names:
            return ""
        page = _page()
        nonce = csp_nonce(context)
        if extra:  # the template's own attributes: written each time
            return "\n".join(
                format_html(
                    "<{}{}{}",
                    element,
                    _html_attributes(_merged([*attributes, ("nonce", nonce)], extra)),
                    SafeString(close),
                )
                for element, attributes, close in self.elements(page, names)
            )
        key = (type(self).__name__, *sorted(self.tag_spec.flags), "", *names)
        parts = page.tags.get(key)
        if parts is None:
            parts = tuple(
                (f"<{element}{_html_attributes(attributes)}", close)
                for element, attributes, close in self.elements(page, names)
            )
            page.keep_tag(key, parts)
        between = _html_attributes([("nonce", nonce)])
        return "\n".join(head + between + close for head, close in parts)


class ScriptNode(_AssetNode):
    def elements(self, page: _Page, names: list[str]) -> list[Element]:
        url, integrity = page.asset(names[0])
        flags = self.tag_spec.flags
        attributes: Attributes = [
            ("type", "module" if "module" in flags else None),
            ("src", url),
            ("integrity", integrity),
            ("crossorigin", "anonymous" if integrity and _cross_origin(url) else None),
            ("defer", "defer" in flags),
            ("async", "async" in flags),
        ]
        return [("script", attributes, "></script>")]


class StylesheetNode(_AssetNode):
    def elements(self, page: _Page, names: list[str]) -> list[Element]:
        url, integrity = page.asset(names[0])
        attributes: Attributes = [
            ("rel", "stylesheet"),
            ("href", url),
            ("integrity", integrity),
            ("crossorigin", "anonymous" if integrity and _cross_origin(url) else None),
        ]
        return [("link", attributes, ">")]


class ModulePreloadNode(_AssetNode):
    def elements(self, page: _Page, names: list[str]) -> list[Element]:
        found = []
        for name in dict.fromkeys(
            module for root in names for module in page.closure(root)
        ):
            url, integrity = page.asset(name)
            attributes: Attributes = [
                ("rel", "modulepreload"),
                ("href", url),
                ("integrity", integrity),
            ]
            found.append(("link", attributes, ">"))
        return found


class ImportMapNode(template.Node):
    def render(self, context: Context) -> str:
        # A node's output is never escaped: a plain str saves copying the
        # map once more into a SafeString.
        head, tail = _page().import_map_parts()
        return head + _html_attributes([("nonce", csp_nonce(context))]) + tail


@register.tag
def script(parser: Parser, token: Token) -> ScriptNode:
    """
    ``{% script "js/app.js" [module] [defer] [async] [name=value…] %}``: a
    ``<script>`` with the file's ``?v=`` URL, integrity and the CSP nonce.
    """
    return ScriptNode(
        _Tag(parser, token, flags=("module", "defer", "async"), reserved=("src",))
    )


@register.tag
def stylesheet(parser: Parser, token: Token) -> StylesheetNode:
    """``{% stylesheet "css/site.css" [name=value…] %}``: a ``<link
    rel="stylesheet">`` with the ``?v=`` URL, integrity and the CSP nonce."""
    return StylesheetNode(_Tag(parser, token, reserved=("href", "rel")))


@register.tag
def modulepreload(parser: Parser, token: Token) -> ModulePreloadNode:
    """``{% modulepreload "js/app.js" […] [name=value…] %}``: a ``<link
    rel="modulepreload">`` for each module and each module it statically
    imports, transitively."""
    return ModulePreloadNode(_Tag(parser, token, reserved=("href", "rel"), many=True))


@register.tag
def importmap(parser: Parser, token: Token) -> ImportMapNode:
    """``{% importmap %}``: the page's import map (put it before any module)."""
    bits = token.split_contents()
    if len(bits) > 1:
        raise template.TemplateSyntaxError(f"{{% {bits[0]} %}} takes no arguments.")
    return ImportMapNode()
