"""Rotations announced over Redis pub/sub (freshstatic.broadcast)."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from freshstatic import cache as freshcache
from freshstatic.storage import FreshStaticFilesStorage
from tests.utils import RedisServer, StaticTree, sha, wait_for


@pytest.mark.redis
def test_rotations_reach_other_processes_at_once_through_pub_sub(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    """With a long GENERATION_TTL, only the announcement can bring the news."""
    static_tree.write("a.css", b"v1")
    with override_settings(FRESHSTATIC={"GENERATION_TTL": 3600}):
        process_a, process_b = FreshStaticFilesStorage(), FreshStaticFilesStorage()
        assert process_b.url("a.css") == f"/static/a.css?v={sha(b'v1')}"
        static_tree.write("a.css", b"v2")
        # Let B's listener subscribe, then rotate in A (as another process).
        wait_for(
            lambda: redis_cache.command("PUBSUB", "NUMSUB", "freshstatic:rotated")[1]
        )
        assert process_a.hash_cache.rotate()
        wait_for(
            lambda: process_b.url("a.css") == f"/static/a.css?v={sha(b'v2')}",
            timeout=10,
            message="the announcement to reach process B",
        )


@pytest.mark.redis
def test_a_redis_user_without_pub_sub_rights_still_rotates(
    static_tree: StaticTree, redis_cache: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_cache.command(
        "ACL", "SETUSER", "nochannels", "on", ">secret", "~*", "+@all", "resetchannels"
    )
    limited = redis_cache.url.replace("redis://", "redis://nochannels:secret@")
    with (
        override_settings(
            CACHES={
                "default": {
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": limited,
                }
            }
        ),
        caplog.at_level(logging.WARNING, logger="freshstatic"),
    ):
        hash_cache = freshcache.HashCache("default", "freshstatic")
        generation = hash_cache.refresh().generation
        assert hash_cache.rotate()
        assert hash_cache.rotate()
        hash_cache.expire()
        assert hash_cache.refresh().generation not in (None, generation)
    assert caplog.text.count("cannot be announced") == 1
    assert "is unavailable" not in caplog.text
    redis_cache.command("ACL", "DELUSER", "nochannels")
