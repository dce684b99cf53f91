"""Fixtures shared by the tests; helpers live in tests/utils.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import caches
from django.test import override_settings

from freshstatic import cache as freshcache
from freshstatic import log, middleware, served
from tests.utils import (
    _AUDIT_SINKS,
    APP_CSS_BYTES,
    EXAMPLE,
    ROOT,
    RedisServer,
    ServerProcess,
    StaticTree,
    copy_example_static,
    fetch,
    free_port,
    gunicorn,
    page_hashes,
    page_pid,
    production_example,
    run_python,
    sha,
    subprocess_env,
    wait_for,
)

# The helpers stay importable from here too.
__all__ = [
    "APP_CSS_BYTES",
    "EXAMPLE",
    "ROOT",
    "RedisServer",
    "ServerProcess",
    "StaticTree",
    "copy_example_static",
    "fetch",
    "free_port",
    "gunicorn",
    "page_hashes",
    "page_pid",
    "production_example",
    "run_python",
    "sha",
    "subprocess_env",
    "wait_for",
]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    caches["default"].clear()
    freshcache.expire_all()
    log.forget()
    served.forget_versions()
    middleware.forget_prepared()
    yield
    freshcache.expire_all()


@pytest.fixture
def static_tree(tmp_path: Path) -> Iterator[StaticTree]:
    tree = StaticTree(tmp_path)
    with override_settings(
        STATICFILES_DIRS=[str(tree.plain), ("vendor", str(tree.prefixed))]
    ):
        yield tree


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_cache(redis_server: RedisServer) -> Iterator[RedisServer]:
    """Make the default cache alias a real Redis through django-redis."""
    if redis_server.process is None:
        redis_server.start()
    redis_server.command("FLUSHALL")
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": redis_server.url,
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
            }
        }
    ):
        yield redis_server
    if redis_server.process is None:
        redis_server.start()


@pytest.fixture
def opened_paths() -> Iterator[list[str]]:
    """Every path this process opens during the test."""
    opened: list[str] = []
    _AUDIT_SINKS.append(opened)
    yield opened
    _AUDIT_SINKS.remove(opened)
