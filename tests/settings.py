"""Settings for the test suite: no database, LocMem cache, the freshstatic storage."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "freshstatic",
    "django.contrib.staticfiles",
    "tests.testapp",
]

DATABASES: dict[str, dict[str, str]] = {}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

STATIC_URL = "/static/"
STATIC_ROOT = None
STATICFILES_DIRS: list[str | tuple[str, str]] = []

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "freshstatic.storage.FreshStaticFilesStorage"},
}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]

ROOT_URLCONF = "tests.urls"

LOGGING_CONFIG = None

# Subprocesses started by the tests (management commands, servers) are
# pointed at the test's Redis and static folder through the environment.
if os.environ.get("FRESHSTATIC_TEST_REDIS"):
    CACHES["default"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["FRESHSTATIC_TEST_REDIS"],
    }
if os.environ.get("FRESHSTATIC_TEST_STATIC_DIR"):
    STATICFILES_DIRS = [os.environ["FRESHSTATIC_TEST_STATIC_DIR"]]
