"""
Modules in a real headless Chromium, against a real runserver: a page with
{% importmap %}, {% modulepreload %} and {% script … module %} whose module
imports others (its own, and lit-html from npm through bare specifiers) runs
under a strict Content-Security-Policy; no module is requested without its
version; integrity holds; an edit to an imported module runs after a normal
navigation. Every wait is on a condition, with a generous timeout.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.test_browser import CHROMIUM_ARGS
from tests.utils import ROOT, ServerProcess, fetch, free_port, subprocess_env, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]

NPM = ROOT / "tests" / "fixtures" / "npm"
START_SECONDS = 90.0
CHANGE_SECONDS = 60.0

PAGE = """{% load freshstatic %}<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>modules</title>
  <link rel="icon" href="data:,">
  {% importmap %}
  {% modulepreload "js/app.js" %}
</head>
<body>
  <div id="out"></div>
  <a class="again" href="">again</a>
  {% script "js/app.js" module %}
</body>
</html>
"""

# The same module graph, for a page without an import map.
PLAIN_PAGE = """{% load freshstatic %}<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>plain</title><link rel="icon" href="data:,"></head>
<body>
  <a class="again" href="">again</a>
  {% script "js/plain.js" module %}
</body>
</html>
"""

FILES = {
    "templates/page.html": PAGE,
    "templates/plain.html": PLAIN_PAGE,
    "static/js/app.js": """\
import { html, render } from "lit-html";
import { until } from "lit-html/directives/until.js";
import { message } from "./util.js";

render(
  html`<p class="message">${message}</p>
    <p class="later">${until(Promise.resolve("later"), "waiting")}</p>`,
  document.querySelector("#out"),
);
document.body.dataset.app = message;
window.loadLazy = () =>
  import("./lazy.js").then(
    (lazy) => { document.body.dataset.lazy = lazy.value; },
    (error) => { document.body.dataset.lazy = `refused: ${error}`; },
  );
""",
    "static/js/plain.js": """\
import { message } from "./util.js";

document.body.dataset.app = message;
""",
    "static/js/util.js": 'export const message = "one";\n',
    "static/js/lazy.js": 'export const value = "lazy";\n',
}
IMPORTMAP = {
    "lit-html": "vendor/lit-html/lit-html.js",
    "lit-html/": "vendor/lit-html/",
}
# What app.js loads with it: its own modules and lit-html's.
MODULES = {
    "js/app.js",
    "js/util.js",
    "vendor/lit-html/lit-html.js",
    "vendor/lit-html/directive.js",
    "vendor/lit-html/directive-helpers.js",
    "vendor/lit-html/async-directive.js",
    "vendor/lit-html/directives/until.js",
    "vendor/lit-html/directives/private-async-helpers.js",
}


class Site:
    """The site's folder (see tests/fixtures/modules_site.py)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name, text in FILES.items():
            self.write(name, text)
        shutil.copytree(NPM / "lit-html", folder / "static" / "vendor" / "lit-html")

    def write(self, name: str, text: str) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.folder / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    def start(
        self, log: Path, freshstatic: dict[str, Any]
    ) -> tuple[ServerProcess, str]:
        port = free_port()
        arguments = [
            sys.executable, "-m", "django", "runserver", "--noreload",
            f"127.0.0.1:{port}",
        ]  # fmt: skip
        server = ServerProcess(
            arguments,
            log,
            cwd=ROOT,
            env=subprocess_env(
                DJANGO_SETTINGS_MODULE="tests.fixtures.modules_site",
                MODULES_DIR=str(self.folder),
                MODULES_DEBUG="1",
                MODULES_FRESHSTATIC=json.dumps(freshstatic),
            ),
        )
        base = f"http://127.0.0.1:{port}/"
        try:
            wait_for(lambda: fetch(base), timeout=START_SECONDS, message="runserver")
        except BaseException:
            server.stop()
            raise
        return server, base


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.fail(
            "chromium and chromium-driver are missing (scripts/test installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in [*CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(argument)
    # The console, and DevTools' network events: every request the page
    # makes, from the cache or not, refused or not.
    options.set_capability(
        "goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"}
    )
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=chromedriver)
    )
    driver.set_page_load_timeout(START_SECONDS)
    yield driver
    driver.quit()


class Observer:
    """What the browser requested and logged, gathered as it goes."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.requests: list[str] = []
        self.console: list[str] = []

    def gather(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        self.console.extend(
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")
        )

    def static_requests(self) -> list[tuple[str, str | None]]:
        """Each request under /static/: its name and its ``v``."""
        self.gather()
        found = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.path.startswith("/static/"):
                versions = parse_qs(parts.query).get("v")
                found.append((parts.path[len("/static/") :], versions and versions[0]))
        return found


def page_versions(html: str) -> dict[str, str]:
    """Each name the page's import map lists, and its ``v``."""
    match = re.search(r'<script type="importmap"[^>]*>(.*?)</script>', html, re.S)
    assert match, html
    imports = json.loads(match[1])["imports"]
    return dict(
        re.fullmatch(r"/static/(.+)\?v=([0-9a-f]+)", url).groups()  # type: ignore[union-attr]
        for key, url in imports.items()
        if key.startswith("/static/")
    )


def load(browser: Any, url: str, expected: str) -> None:
    browser.get(url)
    ran(browser, expected)


def ran(browser: Any, expected: str) -> None:
    wait_for(
        lambda: browser.execute_script(
            "return document.body.dataset.app === arguments[0]", expected
        ),
        timeout=CHANGE_SECONDS,
        message=f"the module to run and say {expected!r}",
    )


def test_modules_load_versioned_checked_and_fresh(
    site: Site, browser: Any, tmp_path: Path, record_property: Any
) -> None:
    server, base = site.start(
        tmp_path / "runserver.log",
        # DEBUG is on: integrity only because it is asked for.
        {"IMPORTMAP": IMPORTMAP, "INTEGRITY": True, "LIVE": False},
    )
    observer = Observer(browser)
    try:
        page = f"{base}csp/page.html"
        load(browser, page, "one")
        wait_for(
            lambda: browser.execute_script(
                "return document.querySelector('.later')?.textContent === 'later'"
            ),
            message="lit-html's until() directive to resolve",
        )
        first = observer.static_requests()
        # Every module, preloaded or imported, was asked for by its version:
        # the page's own and lit-html's, through the import map.
        assert {name for name, _v in first} == MODULES, first
        assert [name for name, v in first if not v] == []
        # Under script-src 'nonce-…' alone: nothing refused, nothing missing.
        assert observer.console == []

        # A byte changed on disk under the open page: the browser refuses it.
        site.edit("static/js/lazy.js", '"lazy"', '"LAZY"')
        browser.execute_script("window.loadLazy()")
        wait_for(
            lambda: browser.execute_script("return document.body.dataset.lazy"),
            message="the lazy module to load or be refused",
        )
        lazy = browser.execute_script("return document.body.dataset.lazy")
        assert lazy.startswith("refused"), lazy
        observer.gather()
        refusals = [line for line in observer.console if "integrity" in line]
        assert refusals, observer.console
        lazy_requests = [
            v for name, v in observer.static_requests() if name == "js/lazy.js"
        ]
        assert lazy_requests, observer.requests
        assert all(lazy_requests), observer.requests

        # An edit to an imported module, then a normal navigation: new code.
        before = page_versions(fetch(page) or "")
        site.edit("static/js/util.js", '"one"', '"two"')
        wait_for(
            lambda: (
                page_versions(fetch(page) or "").get("js/util.js")
                not in (None, before["js/util.js"])
            ),
            timeout=CHANGE_SECONDS,
            message="the watcher to give util.js a new version",
        )
        observer.requests.clear()
        observer.console.clear()
        browser.find_element("css selector", "a.again").click()
        ran(browser, "two")
        second = observer.static_requests()
        assert [name for name, v in second if not v] == []
        assert ("js/util.js", page_versions(fetch(page) or "")["js/util.js"]) in second
        assert observer.console == []
        evidence = {
            "first page": sorted(f"{name}?v={v}" for name, v in first),
            "refused": refusals[0],
            "after the edit": sorted(f"{name}?v={v}" for name, v in second),
        }
        record_property("evidence", evidence)
        print(json.dumps(evidence, indent=2))
    finally:
        server.stop()


def test_without_an_import_map_rewritten_imports_carry_their_version(
    site: Site, browser: Any, tmp_path: Path
) -> None:
    server, base = site.start(
        tmp_path / "runserver.log", {"REWRITE_IMPORTS": True, "LIVE": False}
    )
    observer = Observer(browser)
    try:
        page = f"{base}plain.html"
        load(browser, page, "one")
        assert [name for name, v in observer.static_requests() if not v] == []
        site.edit("static/js/util.js", '"one"', '"two"')
        before = fetch(page)
        wait_for(
            lambda: fetch(page) not in (None, before),
            timeout=CHANGE_SECONDS,
            message="plain.js to get a new version (it imports util.js)",
        )
        browser.find_element("css selector", "a.again").click()
        ran(browser, "two")
        assert [name for name, v in observer.static_requests() if not v] == []
    finally:
        server.stop()
