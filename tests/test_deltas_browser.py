"""
The proof in a real browser: headless Chromium loads a page with a 500 KB
module from a real runserver, keeps it as a compression dictionary, and
after an edit of a few lines receives the new version as a dcz delta of a
few hundred bytes, and runs it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils import ROOT, ServerProcess, fetch, free_port, subprocess_env, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.subprocess,
]

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
MODULE_BYTES = 500_000

# A site of its own: the page, and the middleware serving with a version store.
SITE = """
import sys

from django.conf import settings
from django.core.management import call_command
from django.http import HttpResponse
from django.template import engines
from django.urls import path

static_dir, versions_dir, port = sys.argv[1:4]
settings.configure(
    DEBUG=False,
    SECRET_KEY="tests-only",
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=["freshstatic", "django.contrib.staticfiles"],
    DATABASES={},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    STATIC_URL="/static/",
    STATICFILES_DIRS=[static_dir],
    STORAGES={
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "freshstatic.storage.FreshStaticFilesStorage"},
    },
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "freshstatic.middleware.FreshStaticMiddleware",
    ],
    ROOT_URLCONF="__main__",
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    FRESHSTATIC={"VERSIONS": versions_dir, "WATCH": True},
)
PAGE = (
    '{% load static %}<!doctype html><html><body><p id="version">none</p>'
    '<script type="module" src="{% static "js/big.js" %}"></script></body></html>'
)


def page(request):
    return HttpResponse(engines["django"].from_string(PAGE).render({}, request))


urlpatterns = [path("", page)]

if __name__ == "__main__":
    import django

    django.setup()
    call_command("runserver", f"127.0.0.1:{port}", "--noreload")
"""


def module(version: int) -> bytes:
    """A 500 KB ES module whose few last lines say which version it is."""
    lines = [
        f"export function f{i}(a, b) {{ return a * {i * 7919 % 10007} + b - {i}; }}\n"
        for i in range(MODULE_BYTES // 60)
    ]
    body = "".join(lines)
    body += f"window.bigVersion = {version};\n"
    body += f'document.getElementById("version").textContent = "v{version}";\n'
    return body.encode()


def edited(data: bytes) -> bytes:
    """The module with a few lines changed, and its version now 2."""
    text = data.decode()
    for i in (10, 4000, 7000):
        text = text.replace(
            f"export function f{i}(a, b) {{",
            f"export function f{i}(a, b) {{ a += 1;",
            1,
        )
    return (
        text.replace("window.bigVersion = 1", "window.bigVersion = 2")
        .replace('"v1"', '"v2"')
        .encode()
    )


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
    # The DevTools Protocol's network events, through Selenium's log.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=chromedriver)
    )
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def network_events(driver: Any) -> list[dict[str, Any]]:
    """The DevTools network events logged since the last call."""
    events = [
        json.loads(entry["message"])["message"]
        for entry in driver.get_log("performance")
    ]
    return [event for event in events if event["method"].startswith("Network.")]


def registered_dictionaries(driver: Any, page: str) -> str:
    """What Chromium lists as its compression dictionaries (its own
    chrome://net-internals page), read from a second tab."""
    driver.switch_to.new_window("tab")
    try:
        driver.get("chrome://net-internals/#sharedDictionary")
        return str(driver.execute_script("return document.body.innerText"))
    finally:
        driver.close()
        driver.switch_to.window(page)


def kept_dictionary(driver: Any, page: str, sha256: str) -> str | None:
    listed = registered_dictionaries(driver, page)
    return listed if sha256 in listed else None


def test_an_edited_module_arrives_as_a_small_delta(
    browser: Any, tmp_path: Path, record_property: Any
) -> None:
    static = tmp_path / "static"
    (static / "js").mkdir(parents=True)
    big = static / "js" / "big.js"
    old = module(1)
    big.write_bytes(old)
    site = tmp_path / "site.py"
    site.write_text(SITE)
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    server = ServerProcess(
        [sys.executable, str(site), str(static), str(tmp_path / "versions"), str(port)],
        tmp_path / "runserver.log",
        cwd=ROOT,
        env=subprocess_env(),
    )
    try:
        wait_for(lambda: fetch(base), timeout=60, message="runserver to answer")
        browser.get(base)
        wait_for(
            lambda: browser.execute_script("return window.bigVersion") == 1,
            timeout=60,
            message="the module's first version to run",
        )
        page = browser.current_window_handle
        # Chromium keeps the module as a dictionary once it has it whole.
        old_hash = hashlib.sha256(old).hexdigest()
        listed = wait_for(
            lambda: kept_dictionary(browser, page, old_hash),
            timeout=60,
            message="Chromium to keep the module as a dictionary",
        )
        assert '"match": "/static/js/big.js"' in listed
        network_events(browser)  # what came before the edit

        new = edited(old)
        big.write_bytes(new)
        old_html = fetch(base) or ""
        wait_for(
            lambda: (fetch(base) or "") != old_html,
            timeout=60,
            message="the page to link the new version",
        )
        browser.refresh()  # a normal reload
        wait_for(
            lambda: browser.execute_script("return window.bigVersion") == 2,
            timeout=60,
            message="the module's new version to run",
        )
        assert (
            browser.execute_script(
                "return document.getElementById('version').textContent"
            )
            == "v2"
        )

        events = network_events(browser)
        (request_id,) = {
            event["params"]["requestId"]
            for event in events
            if event["method"] == "Network.requestWillBeSent"
            and re.search(r"/static/js/big\.js\?v=", event["params"]["request"]["url"])
        }
        sent = [
            event["params"]["headers"]
            for event in events
            if event["method"] == "Network.requestWillBeSentExtraInfo"
            and event["params"]["requestId"] == request_id
        ]
        received = [
            event["params"]["response"]
            for event in events
            if event["method"] == "Network.responseReceived"
            and event["params"]["requestId"] == request_id
        ]
        finished = [
            event["params"]["encodedDataLength"]
            for event in events
            if event["method"] == "Network.loadingFinished"
            and event["params"]["requestId"] == request_id
        ]
        headers = {key.lower(): value for key, value in received[0]["headers"].items()}
        request_headers = {key.lower(): value for key, value in sent[0].items()}
        evidence = {
            "module_bytes": len(new),
            "available_dictionary": request_headers.get("available-dictionary"),
            "accept_encoding": request_headers.get("accept-encoding"),
            "content_encoding": headers.get("content-encoding"),
            "encoded_bytes_on_the_wire": finished[0],
        }
        record_property("delta", evidence)
        print(evidence)
        assert "dcz" in request_headers["accept-encoding"]
        assert headers["content-encoding"] == "dcz"
        assert finished[0] < len(new) * 0.02
    finally:
        server.stop()
