"""
The example site for the browser test, behind a far-future caching policy for
every static file; BROWSER_STORAGE=plain swaps freshstatic for Django's plain
StaticFilesStorage (the control).
"""

import os

from example.settings import *  # noqa: F403

DEBUG = False
STATICFILES_DIRS = [os.environ["EXAMPLE_STATIC_DIR"]]
ROOT_URLCONF = "tests.urls_browser"

if os.environ.get("BROWSER_STORAGE") == "plain":
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    MIDDLEWARE = ["tests.far_future.FarFutureStaticMiddleware"]
else:
    MIDDLEWARE = [
        "tests.far_future.FarFutureStaticMiddleware",
        "freshstatic.middleware.FreshStaticMiddleware",
    ]
