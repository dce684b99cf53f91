"""
Settings for the example site: DEBUG on, runserver, no database.

Set DJANGO_DEBUG=0 to render the page as in production (the ?v= values are
the same; runserver then no longer serves the files themselves).
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") != "0"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    # Above staticfiles, so that runserver lets the middleware serve.
    "freshstatic",
    "django.contrib.staticfiles",
    "example",
]

# Serves static files with safe cache headers, stylesheet references busted;
# with DEBUG on, also the live page (FRESHSTATIC["LIVE"] = "auto"): open pages
# follow edits to static files by themselves.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "freshstatic.middleware.FreshStaticMiddleware",
]
ROOT_URLCONF = "example.urls"
DATABASES: dict[str, dict[str, str]] = {}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "freshstatic.storage.FreshStaticFilesStorage"},
}

# One process: LocMem holds the hashes, and the watcher that runserver starts
# (FRESHSTATIC["WATCH"] = "auto", the default) invalidates them on each edit.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"freshstatic": {"handlers": ["console"], "level": "INFO"}},
}
