"""gunicorn --preload with one watcher per worker and per-process caches."""

import os

from example.settings import *  # noqa: F403

DEBUG = False
STATICFILES_DIRS = [os.environ["EXAMPLE_STATIC_DIR"]]
FRESHSTATIC = {"WATCH": True}
