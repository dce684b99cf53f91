"""{% load freshstatic %}: what each tag writes, exactly."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.http import HttpRequest, HttpResponse
from django.template import Context, RequestContext, Template, TemplateSyntaxError
from django.test import Client, RequestFactory, override_settings

import freshstatic
from freshstatic import served as served_module
from freshstatic.storage import FreshStaticMixin
from tests.utils import StaticTree, sha

APP_JS = (
    b'import {u} from "./util.js";\n'
    b'import "lit";\n'
    b'import("./lazy.js");\n'
    b'import "https://cdn.example/x.js";\n'
    b'import "./missing.js";\n'
    b"export const app = u;\n"
)
UTIL_JS = b'import {app} from "./app.js";\nexport const u = 1;\n'
LAZY_JS = b"export default 2;\n"
LIT_JS = b'import "./part.js";\nexport const lit = 1;\n'
PART_JS = b"export const part = 1;\n"
SITE_CSS = b".a{background:url(../img/a.png)}\n"
A_PNG = b"\x89PNG a"
IMPORTMAP = {"lit": "vendor/lit/index.js", "lit/": "vendor/lit/"}


def sri(data: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def site(static_tree: StaticTree) -> Iterator[StaticTree]:
    static_tree.write("js/app.js", APP_JS)
    static_tree.write("js/util.js", UTIL_JS)
    static_tree.write("js/lazy.js", LAZY_JS)
    static_tree.write("vendor/lit/index.js", LIT_JS)
    static_tree.write("vendor/lit/part.js", PART_JS)
    static_tree.write("css/site.css", SITE_CSS)
    static_tree.write("img/a.png", A_PNG)
    with override_settings(FRESHSTATIC={"IMPORTMAP": IMPORTMAP}):
        yield static_tree


def render(source: str, context: dict[str, Any] | None = None, **kwargs: Any) -> str:
    request = kwargs.pop("request", None)
    template = Template("{% load freshstatic %}" + source)
    if request is not None:
        return template.render(RequestContext(request, context or {}))
    return template.render(Context(context or {}))


def url(name: str, data: bytes) -> str:
    return f"/static/{name}?v={sha(data)}"


# -- {% script %} ------------------------------------------------------------------


def test_script(site: StaticTree) -> None:
    assert render('{% script "js/lazy.js" %}') == (
        f'<script src="{url("js/lazy.js", LAZY_JS)}" integrity="{sri(LAZY_JS)}">'
        "</script>"
    )


def test_script_options_and_attributes(site: StaticTree) -> None:
    assert render(
        '{% script "js/lazy.js" module defer async data-x="1" id=name %}',
        {"name": "main"},
    ) == (
        f'<script type="module" src="{url("js/lazy.js", LAZY_JS)}" '
        f'integrity="{sri(LAZY_JS)}" defer async data-x="1" id="main"></script>'
    )


def test_attribute_values_are_escaped(site: StaticTree) -> None:
    title = '"><script>alert(1)</script>&'
    assert render('{% script "js/lazy.js" title=title %}', {"title": title}) == (
        f'<script src="{url("js/lazy.js", LAZY_JS)}" integrity="{sri(LAZY_JS)}" '
        'title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;"></script>'
    )


def test_true_false_and_none_attributes(site: StaticTree) -> None:
    assert render(
        '{% script "js/lazy.js" defer async=on data-none=none defer=off %}',
        {"on": True, "off": False, "none": None},
    ) == (
        f'<script src="{url("js/lazy.js", LAZY_JS)}" integrity="{sri(LAZY_JS)}" '
        "async></script>"
    )


def test_the_templates_own_values_win(site: StaticTree) -> None:
    assert render(
        '{% script "js/lazy.js" integrity=False type="text/plain" nonce="n" %}',
        {"csp_nonce": "ignored"},
    ) == (
        f'<script type="text/plain" src="{url("js/lazy.js", LAZY_JS)}" '
        'nonce="n"></script>'
    )


def test_a_missing_file_gets_its_plain_url(site: StaticTree) -> None:
    assert render('{% script "js/nowhere.js" %}') == (
        '<script src="/static/js/nowhere.js"></script>'
    )
    assert render("{% script name %}", {"name": ""}) == ""


# -- integrity: DEBUG and FRESHSTATIC["INTEGRITY"] ----------------------------------


@pytest.mark.parametrize(
    ("debug", "setting", "expected"),
    [
        (False, "auto", True),
        (True, "auto", False),
        (True, True, True),
        (False, False, False),
        (True, "off", False),
    ],
)
def test_integrity_follows_the_setting_and_debug(
    site: StaticTree, debug: bool, setting: object, expected: bool
) -> None:
    with override_settings(
        DEBUG=debug, FRESHSTATIC={"IMPORTMAP": IMPORTMAP, "INTEGRITY": setting}
    ):
        html = render(
            '{% script "js/lazy.js" %}{% stylesheet "css/site.css" %}'
            '{% modulepreload "js/lazy.js" %}{% importmap %}'
        )
    # One attribute per tag, and the import map's "integrity" entries.
    assert (html.count(' integrity="sha256-') == 3) is expected
    assert ('"integrity":{' in html) is expected
    assert ("sha256-" in html) is expected


def test_a_rewritten_stylesheets_integrity_is_of_the_bytes_served(
    site: StaticTree,
) -> None:
    with override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"]):
        html = render('{% stylesheet "css/site.css" media="print" %}')
        match = re.fullmatch(
            r'<link rel="stylesheet" href="([^"]+)" integrity="([^"]+)" '
            r'media="print">',
            html,
        )
        assert match, html
        response = Client().get(match[1])
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    assert f"a.png?v={sha(A_PNG)}".encode() in body  # served rewritten
    assert match[2] == sri(body) != sri(SITE_CSS)
    assert match[1] == f"/static/css/site.css?v={sha(body)}"


def test_a_stylesheet_served_as_it_is(site: StaticTree) -> None:
    assert render('{% stylesheet "css/site.css" %}') == (
        f'<link rel="stylesheet" href="{url("css/site.css", SITE_CSS)}" '
        f'integrity="{sri(SITE_CSS)}">'
    )


class BucketStorage(Storage):
    """Like S3: files behind open() and exists(), no local path()."""

    files: ClassVar[dict[str, bytes]] = {"js/remote.js": b"export default 'remote';"}

    def exists(self, name: str) -> bool:
        return name in self.files

    def _open(self, name: str, mode: str = "rb") -> ContentFile[bytes]:
        return ContentFile(self.files[name], name=name)

    def url(self, name: str | None) -> str:
        return f"https://bucket.example/{name}"


class FreshBucket(FreshStaticMixin, BucketStorage):
    pass


def test_a_remote_files_integrity_and_crossorigin(site: StaticTree) -> None:
    data = BucketStorage.files["js/remote.js"]
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "tests.test_templatetags.FreshBucket"},
        }
    ):
        assert render('{% script "js/remote.js" %}') == (
            f'<script src="https://bucket.example/js/remote.js?v={sha(data)}" '
            f'integrity="{sri(data)}" crossorigin="anonymous"></script>'
        )


# -- the CSP nonce -------------------------------------------------------------------


def test_the_nonce_of_the_context(site: StaticTree) -> None:
    html = render(
        '{% script "js/lazy.js" %}{% stylesheet "css/site.css" %}'
        '{% modulepreload "js/lazy.js" %}{% importmap %}',
        {"csp_nonce": 'n"1'},
    )
    assert html.count(' nonce="n&quot;1"') == 4


def test_the_nonce_of_the_request(site: StaticTree) -> None:
    # django-csp gives each request a csp_nonce attribute.
    request = RequestFactory().get("/")
    request.csp_nonce = "from-django-csp"  # type: ignore[attr-defined]
    html = render('{% script "js/lazy.js" %}', request=request)
    assert ' nonce="from-django-csp"' in html


def test_no_nonce_no_attribute(site: StaticTree) -> None:
    html = render(
        '{% importmap %}{% script "js/lazy.js" %}', request=RequestFactory().get("/")
    )
    assert "nonce" not in html


def test_djangos_own_csp_middleware_names_the_nonce_the_tags_use(
    site: StaticTree,
) -> None:
    csp = pytest.importorskip("django.middleware.csp")  # Django 6.0+
    from django.utils.csp import CSP

    def view(request: HttpRequest) -> HttpResponse:
        # No context processor: the tags ask the request.
        return HttpResponse(render('{% script "js/lazy.js" module %}', request=request))

    with override_settings(SECURE_CSP={"script-src": [CSP.NONCE]}):
        response = csp.ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))
    nonce = re.search(r' nonce="([^"]+)"', response.content.decode())
    assert nonce, response.content
    assert response["Content-Security-Policy"] == f"script-src 'nonce-{nonce[1]}'"


# -- {% modulepreload %} -------------------------------------------------------------


def test_modulepreload_follows_static_imports(site: StaticTree) -> None:
    # app -> ./util.js (-> ./app.js: a cycle), "lit" (IMPORTMAP) -> ./part.js;
    # not import("./lazy.js"), a URL, or a file that does not exist.
    lines = render('{% modulepreload "js/app.js" %}').split("\n")
    expected = [
        ("js/app.js", APP_JS),
        ("js/util.js", UTIL_JS),
        ("vendor/lit/index.js", LIT_JS),
        ("vendor/lit/part.js", PART_JS),
    ]
    assert lines == [
        f'<link rel="modulepreload" href="{url(name, data)}" integrity="{sri(data)}">'
        for name, data in expected
    ]


def test_modulepreload_of_several_lists_each_module_once(site: StaticTree) -> None:
    html = render(
        '{% modulepreload "js/util.js" "vendor/lit/index.js" fetchpriority="high" %}'
    )
    hrefs = re.findall(r'href="/static/([^"?]+)\?', html)
    assert hrefs == [
        "js/util.js",
        "js/app.js",
        "vendor/lit/index.js",
        "vendor/lit/part.js",
    ]
    assert html.count(' fetchpriority="high"') == 4


def test_modulepreload_follows_edits(site: StaticTree) -> None:
    assert "lazy.js" not in render('{% modulepreload "js/util.js" %}')
    site.write("js/util.js", b'import "./lazy.js";\n')
    freshstatic.invalidate()
    hrefs = re.findall(
        r'href="/static/([^"?]+)\?', render('{% modulepreload "js/util.js" %}')
    )
    assert hrefs == ["js/util.js", "js/lazy.js"]


# -- {% importmap %} ----------------------------------------------------------------


def import_map(html: str) -> dict[str, dict[str, str]]:
    match = re.fullmatch(
        r'<script type="importmap"(?: nonce="[^"]*")?>(.*)</script>', html
    )
    assert match, html
    return dict(json.loads(match[1]))


def test_importmap(site: StaticTree) -> None:
    found = import_map(render("{% importmap %}"))
    files = {
        "js/app.js": APP_JS,
        "js/lazy.js": LAZY_JS,
        "js/util.js": UTIL_JS,
        "vendor/lit/index.js": LIT_JS,
        "vendor/lit/part.js": PART_JS,
    }
    assert found["imports"] == {
        "lit": url("vendor/lit/index.js", LIT_JS),
        "lit/index.js": url("vendor/lit/index.js", LIT_JS),
        "lit/part.js": url("vendor/lit/part.js", PART_JS),
        "lit/": "/static/vendor/lit/",
        **{f"/static/{name}": url(name, data) for name, data in files.items()},
    }
    assert found["integrity"] == {
        url(name, data): sri(data) for name, data in files.items()
    }


def test_importmap_follows_edits(site: StaticTree) -> None:
    before = import_map(render("{% importmap %}"))
    site.write("js/util.js", b"export const u = 2;\n")
    site.write("js/new.js", b"export const n = 1;\n")
    freshstatic.invalidate()
    after = import_map(render("{% importmap %}"))
    new_util = url("js/util.js", b"export const u = 2;\n")
    assert before["imports"]["/static/js/util.js"] != new_util
    assert after["imports"]["/static/js/util.js"] == new_util
    assert after["integrity"][new_util] == sri(b"export const u = 2;\n")
    assert after["imports"]["/static/js/new.js"] == url(
        "js/new.js", b"export const n = 1;\n"
    )


def test_a_warm_importmap_reads_no_file(
    site: StaticTree, opened_paths: list[str]
) -> None:
    first = render("{% importmap %}")
    assert any(path.endswith("util.js") for path in opened_paths)  # cold: read
    opened_paths.clear()
    assert render("{% importmap %}") == first
    assert opened_paths == []


def test_importmap_json_cannot_leave_its_element(site: StaticTree) -> None:
    hostile = "</script><script>alert(1)</script><!--&"
    with override_settings(FRESHSTATIC={"IMPORTMAP": {hostile: "js/lazy.js"}}):
        html = render("{% importmap %}")
    assert html.count("<") == 2  # its own tags only
    assert "&" not in html
    assert import_map(html)["imports"][hostile] == url("js/lazy.js", LAZY_JS)


def test_importmap_maps_urls_as_given(site: StaticTree) -> None:
    with override_settings(
        FRESHSTATIC={"IMPORTMAP": {"react": "https://esm.sh/react@19"}}
    ):
        found = import_map(render("{% importmap %}"))
    assert found["imports"]["react"] == "https://esm.sh/react@19"
    assert "https://esm.sh/react@19" not in found["integrity"]


def test_importmap_with_version_in_filename(site: StaticTree) -> None:
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {
                "BACKEND": "freshstatic.storage.FreshStaticFilesStorage",
                "OPTIONS": {"version_in": "filename"},
            },
        }
    ):
        from django.core.files.storage import storages

        if getattr(storages["staticfiles"], "version_in", "query") != "filename":
            pytest.skip("Django 4.2 drops OPTIONS given by override_settings")
        found = import_map(render("{% importmap %}"))
    # Imports resolve to plain URLs, which map to the versioned files.
    assert found["imports"]["/static/js/lazy.js"] == (
        f"/static/js/lazy.{sha(LAZY_JS)}.js"
    )


def test_a_storage_without_hashes_gets_plain_tags(site: StaticTree) -> None:
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
            },
        }
    ):
        assert render('{% script "js/app.js" %}{% modulepreload "js/app.js" %}') == (
            '<script src="/static/js/app.js"></script>'
            '<link rel="modulepreload" href="/static/js/app.js">'
        )
        assert import_map(render("{% importmap %}")) == {
            "imports": {
                "lit": "/static/vendor/lit/index.js",
                "lit/": "/static/vendor/lit/",
            }
        }


# -- module-aware hashing ------------------------------------------------------------


def test_a_modules_url_covers_what_it_imports(site: StaticTree) -> None:
    with override_settings(MIDDLEWARE=["freshstatic.middleware.FreshStaticMiddleware"]):
        before = render('{% script "js/app.js" module %}')
        site.write("vendor/lit/part.js", b"export const part = 2;\n")
        freshstatic.invalidate()
        after = render('{% script "js/app.js" module %}')
    # app.js -> "lit" -> ./part.js: the edit changes app.js's URL, its bytes
    # (and so its integrity) stay the same.
    assert before != after
    assert f'integrity="{sri(APP_JS)}"' in after


SERVING = ["freshstatic.middleware.FreshStaticMiddleware"]


def served(url: str) -> tuple[bytes, str]:
    response = Client().get(url)
    assert response.status_code == 200
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    return body, response["Cache-Control"]


def test_a_module_is_served_as_it_is_under_a_version_covering_its_imports(
    site: StaticTree,
) -> None:
    with override_settings(MIDDLEWARE=SERVING):
        html = render('{% script "js/app.js" module %}')
        src = re.search(r'src="([^"]+)"', html)
        assert src, html
        body, cache_control = served(src[1])
    assert src[1] != url("js/app.js", APP_JS)  # not the hash of its bytes alone
    assert body == APP_JS
    assert cache_control == "public, max-age=31536000, immutable"
    assert f'integrity="{sri(APP_JS)}"' in html


def test_a_large_modules_integrity_is_of_its_bytes_under_any_version(
    site: StaticTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Streamed from its file, not held in memory.
    monkeypatch.setattr(served_module, "IN_MEMORY_MAX_BYTES", 64)
    with override_settings(MIDDLEWARE=SERVING):
        before = render('{% modulepreload "js/app.js" %}').split("\n")[0]
        site.write("js/util.js", b"export const u = 2;\n")
        freshstatic.invalidate()
        after = render('{% modulepreload "js/app.js" %}').split("\n")[0]
    assert before != after
    for html in (before, after):
        assert html.startswith('<link rel="modulepreload" href="/static/js/app.js?v=')
        assert html.endswith(f' integrity="{sri(APP_JS)}">')


def test_a_module_without_imports_keeps_the_hash_of_its_bytes(site: StaticTree) -> None:
    with override_settings(MIDDLEWARE=SERVING):
        assert render('{% script "js/lazy.js" %}').startswith(
            f'<script src="{url("js/lazy.js", LAZY_JS)}"'
        )


def test_import_cycles_end(site: StaticTree) -> None:
    # util.js imports app.js, which imports util.js: each is built once, and
    # the import that closes the cycle is left uncovered.
    with override_settings(MIDDLEWARE=SERVING):
        util = render('{% script "js/util.js" %}')
        app = render('{% script "js/app.js" %}')
    assert url("js/util.js", UTIL_JS) not in util
    assert url("js/app.js", APP_JS) not in app


def test_rewrite_imports_versions_each_relative_import_in_the_module(
    site: StaticTree,
) -> None:
    site.write("js/util.js", b"export const u = 1;\n")  # no cycle
    with override_settings(
        MIDDLEWARE=SERVING,
        FRESHSTATIC={"IMPORTMAP": IMPORTMAP, "REWRITE_IMPORTS": True},
    ):
        util = re.search(r'src="([^"]+)"', render('{% script "js/util.js" %}'))
        html = render('{% script "js/app.js" module %}')
        src = re.search(r'src="([^"]+)"', html)
        assert src, html
        assert util, html
        body, _cache_control = served(src[1])
    # ./util.js carries util.js's own version; "lit" is the import map's.
    assert f'from "{util[1].replace("/static/js/", "./")}";'.encode() in body
    assert b'import "lit";' in body
    assert b'import("./lazy.js?v=' + sha(LAZY_JS).encode() in body
    assert b'import "./missing.js";' in body  # not a static file: as it is
    assert f'integrity="{sri(body)}"' in html


# -- mistakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{% script %}",
        '{% script "a.js" bogus %}',
        '{% script "a.js" "b.js" %}',
        '{% script "a.js" src="x.js" %}',
        '{% script "a.js" id="a" id="b" %}',
        '{% stylesheet "a.css" module %}',
        '{% stylesheet "a.css" href="b.css" %}',
        '{% stylesheet "a.css" rel="preload" %}',
        "{% modulepreload %}",
        '{% importmap "x" %}',
    ],
)
def test_mistakes_are_reported_when_the_template_is_read(source: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{% load freshstatic %}" + source)


def test_djangos_own_scripts_are_left_out_of_the_map(site: StaticTree) -> None:
    apps = [
        "freshstatic",
        "django.contrib.staticfiles",
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.admin",
    ]
    with override_settings(INSTALLED_APPS=apps):
        found = import_map(render("{% importmap %}"))
        # Still served and versioned, for {% static %} and {% script %}.
        assert "?v=" in render('{% script "admin/js/core.js" %}')
    assert "/static/js/app.js" in found["imports"]
    assert not [key for key in found["imports"] if "/admin/" in key]
    assert not [key for key in found["imports"] if "/freshstatic/" in key]


def test_mistakes_in_the_settings_are_reported_and_left_out(site: StaticTree) -> None:
    from freshstatic.conf import conf, setting_errors

    importmap = {
        "./local.js": "js/app.js",
        "ok": "js/app.js",
        "folder/": "js/app.js",
        "up": "../settings.py",
        "none": None,
    }
    with override_settings(FRESHSTATIC={"IMPORTMAP": importmap, "INTEGRITY": "maybe"}):
        errors = setting_errors()
        assert conf.IMPORTMAP == {"ok": "js/app.js"}
        assert conf.INTEGRITY == "auto"
    assert len(errors) == 2
    importmap_error, integrity_error = sorted(errors)
    for text in ("'./local.js'", "'folder/'", "'../settings.py'", "None"):
        assert text in importmap_error
    assert "'ok'" not in importmap_error
    assert "'maybe'" in integrity_error
