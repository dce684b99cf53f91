"""
Single-server production without collectstatic: gunicorn with several workers,
Redis sharing the hashes, and one ``manage.py watchstatic`` invalidating them.

    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn --workers 3 example.wsgi
    REDIS_URL=redis://127.0.0.1:6379/0 \\
        DJANGO_SETTINGS_MODULE=example.settings_production python manage.py watchstatic
"""

import os

from example.settings import *  # noqa: F403

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # A Redis that hangs then costs a request one second, not forever.
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
}

FRESHSTATIC = {
    # watchstatic invalidates for every worker; workers start no watcher.
    "WATCH": False,
}
