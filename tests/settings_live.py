"""
A site for the live page's tests and benchmark, in a folder the test makes
(``LIVE_DIR``): ``static/`` is its static folder, ``templates/`` its
templates, and an optional ``page.py`` (importable as ``page``, so that an
edit to it restarts runserver) gives the templates a ``CONTEXT``.

``/<template>`` renders ``templates/<template>`` (``/``: ``page.html``);
``/csp/<template>`` the same under a Content-Security-Policy whose scripts
need the nonce in the template's ``csp_nonce``. With ``LIVE_REDIS_URL``
hashes are shared through that Redis and no watcher starts in the server
(``watchstatic`` runs beside it); ``LIVE_WATCH`` and ``LIVE`` set those
settings.

This module is its own URLconf.
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

FOLDER = Path(os.environ["LIVE_DIR"])
sys.path.insert(0, str(FOLDER))

SECRET_KEY = "tests-only-not-secret"
DEBUG = os.environ.get("LIVE_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = ["freshstatic", "django.contrib.staticfiles"]
MIDDLEWARE = ["freshstatic.middleware.FreshStaticMiddleware"]
ROOT_URLCONF = "tests.settings_live"
DATABASES: dict[str, dict[str, str]] = {}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [FOLDER / "templates"],
    }
]

STATIC_URL = "/static/"
STATICFILES_DIRS = [FOLDER / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "freshstatic.storage.FreshStaticFilesStorage"},
}

CACHES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
FRESHSTATIC: dict[str, Any] = {}
if os.environ.get("LIVE_REDIS_URL"):
    CACHES["default"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["LIVE_REDIS_URL"],
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }
    FRESHSTATIC["WATCH"] = False  # watchstatic invalidates for every worker
if os.environ.get("LIVE_WATCH"):
    FRESHSTATIC["WATCH"] = os.environ["LIVE_WATCH"]
if os.environ.get("LIVE"):
    FRESHSTATIC["LIVE"] = os.environ["LIVE"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"freshstatic": {"handlers": ["console"], "level": "INFO"}},
}

# Imported now, so that runserver's autoreloader watches it.
PAGE_MODULE = importlib.import_module("page") if (FOLDER / "page.py").exists() else None


def page(request: HttpRequest, template: str = "page.html") -> HttpResponse:
    context = dict(getattr(PAGE_MODULE, "CONTEXT", {}))
    context["pid"] = os.getpid()
    return render(request, template, context)


def page_under_policy(request: HttpRequest, template: str) -> HttpResponse:
    nonce = secrets.token_urlsafe(16)
    response = render(request, template, {"csp_nonce": nonce, "pid": os.getpid()})
    response["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; "
        "style-src 'self'; img-src 'self'; connect-src 'self'"
    )
    return response


urlpatterns = [
    path("", page),
    path("csp/<str:template>", page_under_policy),
    path("<str:template>", page),
]
