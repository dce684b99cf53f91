"""
The live page in a real headless Chromium, against real servers: runserver
(threaded, with and without its autoreloader) and gunicorn workers sharing
Redis with ``watchstatic``. Files are edited on disk as editors save them;
every wait is on a condition, with a generous timeout.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import CHROMIUM_ARGS
from tests.utils import (
    ROOT,
    RedisServer,
    ServerProcess,
    fetch,
    free_port,
    subprocess_env,
    wait_for,
)
from tests.utils_production import gunicorn, watchstatic

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]

BLUE, RED, GREEN = "rgb(31, 111, 235)", "rgb(209, 36, 47)", "rgb(45, 164, 78)"
BLUE_PIXEL, RED_PIXEL, GREEN_PIXEL = [31, 111, 235], [209, 36, 47], [45, 164, 78]
# Servers start slowly on a busy machine; a swap is quicker, but the
# machine may be busier still.
START_SECONDS = 90.0
CHANGE_SECONDS = 60.0

PAGE = """{% load static %}<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>live</title>
  <link rel="stylesheet" href="{% static 'css/site.css' %}">
  <link rel="icon" href="{% static 'img/icon.svg' %}">
</head>
<body>
  <h1 class="headline">{{ greeting|default:"Fresh" }}</h1>
  <p class="imported">imported</p>
  <div class="backdrop"></div>
  <img class="logo" src="{% static 'img/logo.svg' %}" width="48" height="48" alt="">
  <picture>
    <source srcset="{% static 'img/art.svg' %} 1x" media="(min-width: 1px)">
    <img class="art" src="{% static 'img/logo.svg' %}" width="48" height="48" alt="">
  </picture>
  <form><input class="field" name="field"></form>
  <p class="pid">{{ pid }}</p>
  <div class="spacer"></div>
  <script src="{% static 'js/app.js' %}"
    {% if csp_nonce %}nonce="{{ csp_nonce }}"{% endif %}></script>
</body>
</html>
"""


def circle(colour: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" '
        f'viewBox="0 0 48 48"><rect width="48" height="48" fill="{colour}"/></svg>'
    )


FILES = {
    "templates/page.html": PAGE,
    "static/css/site.css": (
        '@import "parts/imported.css";\n'
        ".headline { color: #1f6feb; }\n"
        ".backdrop { width: 48px; height: 48px;"
        ' background: url("../img/pattern.svg"); }\n'
        ".spacer { height: 4000px; }\n"
    ),
    "static/css/parts/imported.css": ".imported { color: #1f6feb; }\n",
    "static/img/logo.svg": circle("#1f6feb"),
    "static/img/art.svg": circle("#1f6feb"),
    "static/img/icon.svg": circle("#1f6feb"),
    "static/img/pattern.svg": circle("#1f6feb"),
    "static/js/app.js": "document.body.dataset.app = 'one';\n",
}


class Site:
    """The site's folder (see tests/settings_live.py), edited as editors do."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name, text in FILES.items():
            self.write(name, text)

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, text: str) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def edit(self, name: str, old: str, new: str, *, style: str = "in place") -> None:
        path = self.path(name)
        text = path.read_text()
        assert old in text
        text = text.replace(old, new)
        if style == "in place":
            path.write_text(text)
        else:  # write a temporary file, then rename it over (safe write)
            temporary = path.with_name(path.name + "___jb_tmp___")
            temporary.write_text(text)
            os.replace(temporary, path)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "tests.settings_live",
            "LIVE_DIR": str(self.folder),
            **extra,
        }


def runserver(site: Site, port: int, log: Path, *, autoreload: bool) -> ServerProcess:
    arguments = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}"]
    if not autoreload:
        arguments.append("--noreload")
    return ServerProcess(arguments, log, cwd=ROOT, env=subprocess_env(**site.env()))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site")


@pytest.fixture
def server(site: Site, tmp_path: Path) -> Iterator[str]:
    """runserver without its autoreloader: the base URL."""
    port = free_port()
    process = runserver(site, port, tmp_path / "runserver.log", autoreload=False)
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: fetch(base), timeout=START_SECONDS, message="runserver")
        yield base
    finally:
        process.stop()


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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=chromedriver)
    )
    driver.set_page_load_timeout(START_SECONDS)
    driver.set_script_timeout(CHANGE_SECONDS)
    yield driver
    driver.quit()


# -- what the page shows ---------------------------------------------------------------


def open_page(browser: Any, url: str) -> None:
    browser.get(url)
    settle(browser)


def settle(browser: Any) -> None:
    """Wait for the page to load whole, then mark it (a reload unmarks it)."""
    wait_for(
        lambda: browser.execute_script(
            "return document.readyState === 'complete'"
            " && [...document.images].every((image) => image.complete)"
            " && document.body.dataset.app !== undefined"
        ),
        timeout=START_SECONDS,
        message="the page, its images and its script",
    )
    browser.execute_script("window.liveMarker = 'kept'")


def marker(browser: Any) -> str | None:
    return browser.execute_script("return window.liveMarker ?? null")  # type: ignore[no-any-return]


def style(browser: Any, selector: str, prop: str = "color") -> str:
    return str(
        browser.execute_script(
            "return getComputedStyle(document.querySelector(arguments[0]))"
            "[arguments[1]]",
            selector,
            prop,
        )
    )


def stylesheets(browser: Any) -> list[str]:
    return browser.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('link[rel=stylesheet]')]"
        ".map((link) => link.getAttribute('href'))"
    )


PIXEL_OF = """
const [source, done] = [arguments[0], arguments[arguments.length - 1]];
const image = new Image();
image.onload = () => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 48;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  done(Array.from(context.getImageData(24, 24, 1, 1).data.slice(0, 3)));
};
image.onerror = () => done(null);
image.src = source;
"""


def image_pixel(browser: Any, selector: str) -> list[int] | None:
    """The centre pixel of the picture an <img> shows now."""
    return browser.execute_script(  # type: ignore[no-any-return]
        """
        const image = document.querySelector(arguments[0]);
        if (!image.complete || !image.naturalWidth) return null;
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = 48;
        const context = canvas.getContext('2d');
        context.drawImage(image, 0, 0);
        return Array.from(context.getImageData(24, 24, 1, 1).data.slice(0, 3));
        """,
        selector,
    )


def background_pixel(browser: Any, selector: str) -> list[int] | None:
    """The centre pixel of an element's background image, as now styled."""
    source = style(browser, selector, "backgroundImage")[5:-2]  # url("…")
    return browser.execute_async_script(PIXEL_OF, source)  # type: ignore[no-any-return]


def console(browser: Any) -> list[dict[str, Any]]:
    return browser.get_log("browser")  # type: ignore[no-any-return]


# -- stylesheets -----------------------------------------------------------------------


@pytest.mark.parametrize("save", ["in place", "rename"])
def test_a_stylesheet_edit_restyles_the_page_in_place(
    browser: Any, site: Site, server: str, save: str
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, server)
    assert style(browser, ".headline") == BLUE
    field = browser.find_element(By.CSS_SELECTOR, ".field")
    field.send_keys("typed, not submitted")
    browser.execute_script("window.scrollTo(0, 700)")
    before = stylesheets(browser)

    site.edit("static/css/site.css", "#1f6feb", "#d1242f", style=save)

    wait_for(
        lambda: style(browser, ".headline") == RED and len(stylesheets(browser)) == 1,
        timeout=CHANGE_SECONDS,
        message="the headline restyled, the old stylesheet gone",
    )
    after = stylesheets(browser)
    assert after != before  # a new ?v=, swapped in place
    assert marker(browser) == "kept"  # no navigation
    assert field.get_attribute("value") == "typed, not submitted"
    assert browser.execute_script(
        "return document.activeElement === document.querySelector('.field')"
    )
    assert browser.execute_script("return window.scrollY") == 700


def test_a_stylesheet_is_swapped_through_the_one_importing_it(
    browser: Any, site: Site, server: str
) -> None:
    open_page(browser, server)
    assert style(browser, ".imported") == BLUE

    site.edit("static/css/parts/imported.css", "#1f6feb", "#2da44e")

    wait_for(
        lambda: style(browser, ".imported") == GREEN,
        timeout=CHANGE_SECONDS,
        message="the imported sheet's rule restyled",
    )
    assert marker(browser) == "kept"
    assert style(browser, ".headline") == BLUE


# -- images ----------------------------------------------------------------------------


def test_images_are_swapped_in_place(browser: Any, site: Site, server: str) -> None:
    open_page(browser, server)
    assert image_pixel(browser, ".logo") == BLUE_PIXEL
    assert background_pixel(browser, ".backdrop") == BLUE_PIXEL
    icon = browser.execute_script(
        "return document.querySelector('link[rel=icon]').getAttribute('href')"
    )
    art = browser.execute_script(
        "return document.querySelector('source').getAttribute('srcset')"
    )

    site.edit("static/img/logo.svg", "#1f6feb", "#2da44e")
    site.edit("static/img/pattern.svg", "#1f6feb", "#d1242f")
    site.edit("static/img/icon.svg", "#1f6feb", "#d1242f")
    site.edit("static/img/art.svg", "#1f6feb", "#d1242f")

    wait_for(
        lambda: image_pixel(browser, ".logo") == GREEN_PIXEL,
        timeout=CHANGE_SECONDS,
        message="the <img> showing the new picture",
    )
    wait_for(
        lambda: background_pixel(browser, ".backdrop") == RED_PIXEL,
        timeout=CHANGE_SECONDS,
        message="the stylesheet's background image showing the new picture",
    )
    wait_for(
        lambda: image_pixel(browser, ".art") == RED_PIXEL,
        timeout=CHANGE_SECONDS,
        message="the <picture>'s <source> showing the new picture",
    )
    wait_for(
        lambda: (
            browser.execute_script(
                "return document.querySelector('link[rel=icon]').getAttribute('href')"
            )
            != icon
        ),
        timeout=CHANGE_SECONDS,
        message="the icon's new URL",
    )
    assert browser.execute_script(
        "return document.querySelector('source').getAttribute('srcset')"
    ) not in (art, None)
    assert marker(browser) == "kept"


# -- reloads ---------------------------------------------------------------------------


def test_a_script_edit_reloads_the_page(browser: Any, site: Site, server: str) -> None:
    open_page(browser, server)
    assert browser.execute_script("return document.body.dataset.app") == "one"

    site.edit("static/js/app.js", "'one'", "'two'")

    wait_for(
        lambda: browser.execute_script("return document.body?.dataset.app") == "two",
        timeout=CHANGE_SECONDS,
        message="the page reloaded with the new script",
    )
    assert marker(browser) is None


def test_template_and_python_edits_reload_the_page(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    site.write("page.py", 'CONTEXT = {"greeting": "Hello"}\n')
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    process = runserver(site, port, tmp_path / "runserver.log", autoreload=True)
    try:
        wait_for(lambda: fetch(base), timeout=START_SECONDS, message="runserver")
        open_page(browser, base)
        assert browser.find_element("css selector", ".headline").text == "Hello"
        first_pid = browser.find_element("css selector", ".pid").text

        # A template: the same process renders it again.
        site.edit("templates/page.html", "<h1 class", "<h1 data-edited class")
        wait_for(
            lambda: browser.execute_script(
                "return document.querySelector('h1[data-edited]') !== null"
            ),
            timeout=CHANGE_SECONDS,
            message="the page reloaded with the new template",
        )
        assert marker(browser) is None
        assert browser.find_element("css selector", ".pid").text == first_pid
        settle(browser)

        # Python: runserver restarts; the page hears a new server and reloads.
        site.edit("page.py", "Hello", "Bonjour")
        wait_for(
            lambda: (
                browser.execute_script(
                    "return document.querySelector('.headline')?.textContent"
                )
                == "Bonjour"
            ),
            timeout=START_SECONDS,
            message="the page reloaded from the restarted server",
        )
        assert marker(browser) is None
        assert browser.find_element("css selector", ".pid").text != first_pid
    finally:
        process.stop()


def test_a_restarted_server_is_followed_again(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    first = runserver(site, port, tmp_path / "first.log", autoreload=False)
    second = None
    try:
        wait_for(lambda: fetch(base), timeout=START_SECONDS, message="runserver")
        open_page(browser, base)
        first_pid = browser.find_element("css selector", ".pid").text
        first.stop()

        second = runserver(site, port, tmp_path / "second.log", autoreload=False)
        wait_for(
            lambda: (
                browser.execute_script(
                    "return document.querySelector('.pid')?.textContent"
                )
                not in (None, first_pid)
            ),
            timeout=START_SECONDS,
            message="the page reloaded from the new server",
        )
        settle(browser)
        # And it follows the new server's changes.
        site.edit("static/css/site.css", "#1f6feb", "#d1242f")
        wait_for(
            lambda: style(browser, ".headline") == RED,
            timeout=CHANGE_SECONDS,
            message="the headline restyled by the new server",
        )
        assert marker(browser) == "kept"
    finally:
        first.stop()
        if second is not None:
            second.stop()


# -- several tabs, the console, a strict policy ----------------------------------------


def test_every_open_tab_follows_an_edit(browser: Any, site: Site, server: str) -> None:
    tabs = []
    for _ in range(3):
        if tabs:
            browser.switch_to.new_window("tab")
        open_page(browser, server)
        tabs.append(browser.current_window_handle)

    site.edit("static/css/site.css", "#1f6feb", "#d1242f")

    for tab in tabs:
        browser.switch_to.window(tab)
        wait_for(
            lambda: style(browser, ".headline") == RED,
            timeout=CHANGE_SECONDS,
            message=f"tab {tab} restyled",
        )
        assert marker(browser) == "kept"


def test_the_console_stays_silent(browser: Any, site: Site, server: str) -> None:
    open_page(browser, server)
    site.edit("static/css/site.css", "#1f6feb", "#d1242f")
    wait_for(
        lambda: style(browser, ".headline") == RED and len(stylesheets(browser)) == 1,
        timeout=CHANGE_SECONDS,
        message="the headline restyled",
    )
    assert console(browser) == []


def test_a_page_under_a_content_security_policy(
    browser: Any, site: Site, server: str
) -> None:
    open_page(browser, server + "csp/page.html")
    script = browser.execute_script(
        "const script = document.querySelector('script[data-events]');"
        "return [script.nonce, document.querySelector('script[src*=app]').nonce]"
    )
    assert script[0]
    assert script[0] == script[1]  # the policy's own nonce

    site.edit("static/css/site.css", "#1f6feb", "#d1242f")

    wait_for(
        lambda: style(browser, ".headline") == RED,
        timeout=CHANGE_SECONDS,
        message="the headline restyled under the policy",
    )
    assert marker(browser) == "kept"
    assert console(browser) == []  # nothing refused by the policy


# -- across processes ------------------------------------------------------------------


@pytest.mark.redis
def test_an_edit_seen_by_watchstatic_reaches_a_page_served_by_a_worker(
    browser: Any, site: Site, tmp_path: Path, redis_server: RedisServer
) -> None:
    if redis_server.process is None:
        redis_server.start()
    redis_server.command("FLUSHALL")
    env = site.env(LIVE_REDIS_URL=redis_server.url)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = gunicorn(
        tmp_path, port, "--workers", "2", "--worker-class", "gthread",
        "--threads", "8", **env,
    )  # fmt: skip
    watcher = watchstatic(tmp_path, env)
    try:
        watcher.wait_output("Watching", timeout=START_SECONDS)
        wait_for(lambda: fetch(base), timeout=START_SECONDS, message="gunicorn")
        open_page(browser, base)
        pid = int(browser.find_element("css selector", ".pid").text)
        assert pid != server.process.pid  # a worker rendered it

        site.edit("static/css/site.css", "#1f6feb", "#d1242f")

        wait_for(
            lambda: style(browser, ".headline") == RED,
            timeout=CHANGE_SECONDS,
            message="the headline restyled after watchstatic's rotation",
        )
        assert marker(browser) == "kept"
        # watchstatic's own line may reach its log a moment after the page.
        watcher.wait_output(
            "css/site.css -> /static/css/site.css?v=", timeout=CHANGE_SECONDS
        )
        # No worker watches: the change came from watchstatic, through Redis.
        assert "Watching" not in server.output()
    finally:
        watcher.stop()
        server.stop()
