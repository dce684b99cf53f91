"""
The proof in a real browser: headless Chromium, a real runserver, and the
same far-future caching policy on every static file for freshstatic and for
the control (Django's plain StaticFilesStorage).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils import (
    EXAMPLE,
    ServerProcess,
    copy_example_static,
    fetch,
    free_port,
    page_hashes,
    subprocess_env,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]

BLUE, RED = "rgb(31, 111, 235)", "rgb(209, 36, 47)"
BLUE_PIXEL, GREEN_PIXEL = [31, 111, 235], [45, 164, 78]
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


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
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=chromedriver)
    )
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def observe(driver: Any) -> tuple[str, list[int]]:
    """The headline's colour and the logo's centre pixel, once all has loaded."""
    wait_for(
        lambda: driver.execute_script(
            "return document.readyState === 'complete'"
            " && document.querySelector('.logo').complete"
        ),
        message="the page and its logo to load",
    )
    colour = driver.execute_script(
        "return getComputedStyle(document.querySelector('.headline')).color"
    )
    pixel = driver.execute_script(
        """
        const img = document.querySelector('.logo');
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        return Array.from(context.getImageData(48, 48, 1, 1).data.slice(0, 3));
        """
    )
    return str(colour), [int(value) for value in pixel]


@pytest.mark.parametrize("storage", ["freshstatic", "plain"])
def test_a_normal_navigation_shows_the_edit(
    browser: Any, tmp_path: Path, storage: str, record_property: Any
) -> None:
    from selenium.webdriver.common.by import By

    static = copy_example_static(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = ServerProcess(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        tmp_path / "runserver.log",
        cwd=EXAMPLE,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.settings_browser",
            EXAMPLE_STATIC_DIR=str(static),
            BROWSER_STORAGE=storage,
        ),
    )
    try:
        wait_for(lambda: fetch(base), timeout=60, message="runserver to answer")
        browser.get(base)
        before = observe(browser)
        assert before == (BLUE, BLUE_PIXEL)
        old_page_hashes = page_hashes(browser.page_source)

        css = static / "css" / "site.css"
        css.write_text(css.read_text().replace("color: #1f6feb", "color: #d1242f"))
        logo = static / "img" / "logo.svg"
        logo.write_text(logo.read_text().replace("#1f6feb", "#2da44e"))
        # The server has the new files: a fetch outside the browser sees them.
        wait_for(
            lambda: b"#d1242f" in _raw(f"{base}static/css/site.css"),
            message="the server to serve the edited stylesheet",
        )
        if storage == "freshstatic":
            wait_for(
                lambda: page_hashes(fetch(base) or "") != old_page_hashes,
                message="the watcher to invalidate",
            )

        # A normal navigation: a link click, no cache-bypassing reload.
        browser.execute_script("window.previousPage = true")
        browser.find_element(By.CSS_SELECTOR, "a.again").click()
        wait_for(
            lambda: browser.execute_script("return window.previousPage !== true"),
            message="the new page",
        )
        after = observe(browser)
        record_property(
            "observed", {"storage": storage, "before": before, "after": after}
        )
        print(f"{storage}: before {before}, after {after}")
        if storage == "freshstatic":
            assert after == (RED, GREEN_PIXEL)
        else:
            # The control: the browser keeps its cached, stale copies.
            assert after == (BLUE, BLUE_PIXEL)
    finally:
        server.stop()


def _raw(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url) as response:  # noqa: S310 (loopback)
        return bytes(response.read())
