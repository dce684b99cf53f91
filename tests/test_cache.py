from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
import warnings

import pytest
from django.core.cache import CacheKeyWarning, caches
from django.test import override_settings

import freshstatic
from freshstatic import cache as freshcache
from freshstatic import served
from freshstatic.served import identity_of
from freshstatic.signals import static_changed
from freshstatic.storage import FreshStaticFilesStorage
from tests.utils import (
    RedisServer,
    StaticTree,
    run_python,
    sha,
    wait_for,
)


@pytest.mark.parametrize(
    "name",
    [
        "a.css",
        "with space.css",
        "ünïcode/файл.css",
        "x" * 10_000,
        "ctrl\x07\n.css",
        "\udcff.css",
    ],
)
def test_keys_are_memcached_safe_for_any_name(name: str) -> None:
    hash_cache = freshcache.HashCache("default", "freshstatic")
    state = hash_cache.refresh()
    key = hash_cache.key(state, f"sha256:{name}")
    assert re.fullmatch(r"freshstatic:[0-9a-f]{16}:[0-9a-f]{32}", key)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        caches["default"].set(key, "x")  # LocMem validates keys as memcached would


def test_rotation_starts_a_new_generation_for_every_storage(
    static_tree: StaticTree,
) -> None:
    first, second = FreshStaticFilesStorage(), FreshStaticFilesStorage()
    generation = first.hash_cache.refresh().generation
    assert second.hash_cache.refresh().generation == generation
    freshstatic.invalidate()
    new_generation = first.hash_cache.refresh().generation
    assert new_generation != generation
    assert second.hash_cache.refresh().generation == new_generation


def test_invalidate_sends_static_changed_with_names() -> None:
    received: list[object] = []

    def receiver(sender: object, names: object, **kwargs: object) -> None:
        received.append(names)

    static_changed.connect(receiver)
    try:
        freshstatic.invalidate(["a.css", "b.js"])
        freshstatic.invalidate()
    finally:
        static_changed.disconnect(receiver)
    assert received == [("a.css", "b.js"), None]


def test_hashes_are_stored_with_the_files_they_describe(
    static_tree: StaticTree,
) -> None:
    path = static_tree.write("a.css", b"cached")
    storage = FreshStaticFilesStorage()
    storage.url("a.css")
    state = storage.hash_cache.state
    key = storage.served_files.shared_key("a.css", False)
    (digest, files) = storage.hash_cache.get_many(state, [key])[key]
    assert digest == hashlib.sha256(b"cached").hexdigest()
    assert files == ((str(path), identity_of(str(path))),)


def test_a_shared_hash_is_used_only_for_the_file_it_describes(
    static_tree: StaticTree,
) -> None:
    path = static_tree.write("a.css", b"mine")
    storage = FreshStaticFilesStorage()
    state = storage.hash_cache.refresh()
    key = storage.served_files.shared_key("a.css", False)
    planted = "ab" * 32
    # Another process's entry for this very file is taken as it is...
    storage.hash_cache.set_many(
        state, {key: (planted, ((str(path), identity_of(str(path))),))}
    )
    assert FreshStaticFilesStorage().url("a.css") == "/static/a.css?v=abababababab"
    served.forget_versions()
    # ...but never one computed from other bytes (another release's file, or
    # this file before an edit nobody announced).
    static_tree.write("a.css", b"mine, edited")
    assert FreshStaticFilesStorage().url("a.css") == (
        f"/static/a.css?v={sha(b'mine, edited')}"
    )
    # The entry now describes the edited file.
    (digest, _files) = storage.hash_cache.get_many(state, [key])[key]
    assert digest == hashlib.sha256(b"mine, edited").hexdigest()


def test_settings_that_move_files_invalidate(static_tree: StaticTree, tmp_path) -> None:  # type: ignore[no-untyped-def]
    static_tree.write("a.css", b"one")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.css").write_bytes(b"two")
    storage = FreshStaticFilesStorage()
    assert storage.url("a.css") == f"/static/a.css?v={sha(b'one')}"
    with override_settings(STATICFILES_DIRS=[str(other)]):
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'two')}"


ROUNDS = 200
EDITS_PER_ROUND = 3
READERS = 4
FILE_BYTES = 1024 * 1024


def test_no_stale_hash_survives_concurrent_invalidation(
    static_tree: StaticTree,
) -> None:
    """
    Readers call url() in threads while a writer rewrites files and
    invalidates after each write, as the watcher does. Once the writes of a
    round stop, every URL must carry the hash of the final bytes: a reader that
    hashed old bytes before the last invalidation must not have stored them.
    """
    rng = random.Random(20261121)
    names = [f"race/{index}.bin" for index in range(2)]
    final = {name: rng.randbytes(FILE_BYTES) for name in names}
    for name, data in final.items():
        static_tree.write(name, data)
    storage = FreshStaticFilesStorage()
    edits = 0
    stale: list[str] = []
    for _round in range(ROUNDS):
        stop = threading.Event()

        def read(stop: threading.Event = stop) -> None:
            while not stop.is_set():
                for name in names:
                    storage.url(name)
                time.sleep(0)  # yield the GIL to the writer; not a wait

        readers = [threading.Thread(target=read) for _ in range(READERS)]
        for reader in readers:
            reader.start()
        for _edit in range(EDITS_PER_ROUND):
            name = rng.choice(names)
            final[name] = rng.randbytes(FILE_BYTES)
            static_tree.write(name, final[name])
            freshcache.invalidate((name,))
            edits += 1
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
            assert not reader.is_alive()
        stale += [
            name
            for name in names
            if storage.url(name) != f"/static/{name}?v={sha(final[name])}"
        ]
    assert edits == ROUNDS * EDITS_PER_ROUND
    assert stale == []


# -- a real, shared Redis -----------------------------------------------------


@pytest.mark.redis
def test_redis_generation_is_shared_between_processes(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    static_tree.write("a.css", b"v1")
    with override_settings(FRESHSTATIC={"GENERATION_TTL": 0.05}):
        process_a, process_b = FreshStaticFilesStorage(), FreshStaticFilesStorage()
        assert process_a.url("a.css") == f"/static/a.css?v={sha(b'v1')}"
        assert process_b.url("a.css") == f"/static/a.css?v={sha(b'v1')}"
        static_tree.write("a.css", b"v2")
        # B's memo holds until the shared generation changes.
        assert process_b.url("a.css") == f"/static/a.css?v={sha(b'v1')}"
        # A rotates the shared generation only (as another process would);
        # B sees it on its own within GENERATION_TTL.
        assert process_a.hash_cache.rotate()
        wait_for(
            lambda: process_b.url("a.css") == f"/static/a.css?v={sha(b'v2')}",
            message="process B to see the new generation",
        )


@pytest.mark.redis
@pytest.mark.subprocess
def test_hashstatic_rotate_in_another_process_reaches_this_one(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    static_tree.write("a.css", b"before")
    with override_settings(FRESHSTATIC={"GENERATION_TTL": 0.05}):
        storage = FreshStaticFilesStorage()
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'before')}"
        static_tree.write("a.css", b"after")
        result = run_python(
            ["-m", "django", "hashstatic", "--rotate", "a.css"],
            DJANGO_SETTINGS_MODULE="tests.settings",
            FRESHSTATIC_TEST_REDIS=redis_cache.url,
            FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
        )
        assert result.returncode == 0, result.stderr
        assert f"a.css: /static/a.css?v={sha(b'after')}" in result.stdout
        wait_for(
            lambda: storage.url("a.css") == f"/static/a.css?v={sha(b'after')}",
            message="the rotation to reach this process",
        )


@pytest.mark.redis
def test_warm_url_makes_no_redis_round_trip(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    from tests.utils import redis_commands

    static_tree.write("a.css", b"warm")
    with override_settings(FRESHSTATIC={"GENERATION_TTL": 3600}):
        # A key prefix of its own: no rotation announced for another storage
        # (an earlier test's, a listener reconnecting) drops this one's memo.
        storage = FreshStaticFilesStorage(key_prefix="warm-url")
        with redis_commands() as cold:
            url = storage.url("a.css")
        assert cold  # what this thread sends is seen: the generation, the hash
        with redis_commands() as warm:
            assert all(storage.url("a.css") == url for _ in range(1000))
        assert warm == []


@pytest.mark.redis
def test_unchanged_shared_generation_keeps_the_memo(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    static_tree.write("a.css", b"a")
    with override_settings(FRESHSTATIC={"GENERATION_TTL": 0}):
        # A prefix of its own: no other test's rotation reaches this memo.
        storage = FreshStaticFilesStorage(key_prefix="unchanged-generation")
        storage.url("a.css")
        state = storage.hash_cache.state
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'a')}"
        # The generation was re-read (TTL 0) and found unchanged: same memo.
        assert storage.hash_cache.state is state
        assert "a.css" in state.memo


@pytest.mark.redis
def test_redis_failing_between_generation_reads(
    static_tree: StaticTree, redis_cache: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies while this process still trusts the generation it read."""
    static_tree.write("a.css", b"a")
    static_tree.write("b.css", b"b")
    with (
        override_settings(FRESHSTATIC={"GENERATION_TTL": 3600}),
        caplog.at_level(logging.WARNING, logger="freshstatic"),
    ):
        storage = FreshStaticFilesStorage()
        storage.url("a.css")
        redis_cache.stop()
        assert storage.url("b.css") == f"/static/b.css?v={sha(b'b')}"
        assert storage.urls(["a.css", "c.css"]) == {
            "a.css": f"/static/a.css?v={sha(b'a')}",
            "c.css": None,
        }
        assert not storage.hash_cache.rotate()
    assert caplog.text.count("'default' is unavailable") == 1


@pytest.mark.redis
def test_redis_outage_degrades_and_recovers(
    static_tree: StaticTree, redis_cache: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    static_tree.write("a.css", b"up")
    with (
        override_settings(FRESHSTATIC={"GENERATION_TTL": 0.05}),
        caplog.at_level(logging.WARNING, logger="freshstatic"),
    ):
        storage = FreshStaticFilesStorage()
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'up')}"
        redis_cache.stop()
        static_tree.write("a.css", b"down")
        freshcache.expire_all()  # this process's own watcher would do this
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'down')}"
        assert "'default' is unavailable" in caplog.text
        # Still answering, and still fresh, while Redis is down.
        static_tree.write("a.css", b"still down")
        freshcache.expire_all()
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'still down')}"
        redis_cache.start()
        wait_for(
            lambda: storage.url("a.css") and "'default' answers again." in caplog.text
        )
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'still down')}"
        state = storage.hash_cache.state
        assert state.generation is not None
        key = storage.served_files.shared_key("a.css", False)
        assert storage.hash_cache.get_many(state, [key])


@pytest.mark.redis
def test_a_hung_redis_stalls_one_thread_not_every_thread(
    static_tree: StaticTree, redis_cache: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """
    Redis frozen (SIGSTOP), and no socket timeout configured: the first
    thread to need it waits; every other thread answers without it.
    """
    import signal

    names = [f"page/{index}.css" for index in range(8)]
    for name in names:
        static_tree.write(name, name.encode())
    no_timeouts = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_cache.url,
        }
    }
    assert redis_cache.process is not None
    with (
        override_settings(CACHES=no_timeouts, FRESHSTATIC={"GENERATION_TTL": 0}),
        caplog.at_level(logging.WARNING, logger="freshstatic"),
    ):
        storage = FreshStaticFilesStorage()
        storage.url("warm.css")  # connected, generation known
        done: list[str] = []
        redis_cache.process.send_signal(signal.SIGSTOP)
        try:
            threads = [
                threading.Thread(target=lambda n=name: done.append(storage.url(n)))
                for name in names
            ]
            for thread in threads:
                thread.start()
            # All but the one (or two) caught in a call to the frozen Redis,
            # and without waiting for that call to fail first.
            wait_for(
                lambda: len(done) >= len(names) - 2,
                timeout=120,
                message="threads to answer while Redis is frozen",
            )
            assert "is unavailable" not in caplog.text
            for url in done:
                assert "?v=" in url  # hashed here, without the cache
        finally:
            redis_cache.process.send_signal(signal.SIGCONT)
        for thread in threads:
            thread.join(60)
        assert len(done) == len(names)


@pytest.mark.redis
def test_a_generation_seen_replaced_is_never_adopted_again(
    static_tree: StaticTree, redis_cache: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis restored from an older snapshot brings back an old generation
    and its old hashes: this process starts a new generation instead."""
    path = static_tree.write("a.css", b"old")
    with (
        override_settings(FRESHSTATIC={"GENERATION_TTL": 0}),
        caplog.at_level(logging.WARNING, logger="freshstatic"),
    ):
        storage = FreshStaticFilesStorage()
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'old')}"
        old_generation = storage.hash_cache.state.generation
        snapshot = {
            key: redis_cache.command("DUMP", key)
            for key in redis_cache.command("KEYS", "*freshstatic:*")
        }
        assert len(snapshot) >= 2  # the generation and a.css's hash
        path.write_bytes(b"new")
        assert storage.hash_cache.rotate()
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'new')}"
        # The snapshot comes back (the same keys, the same values).
        redis_cache.command("FLUSHALL")
        for key, value in snapshot.items():
            redis_cache.command("RESTORE", key, "0", value)
        assert storage.url("a.css") == f"/static/a.css?v={sha(b'new')}"
        assert storage.hash_cache.state.generation not in (None, old_generation)
    assert "was replaced before" in caplog.text


@pytest.mark.redis
def test_a_watcher_rotates_once_the_cache_answers_again(
    static_tree: StaticTree, redis_cache: RedisServer
) -> None:
    """Whatever changed while Redis was away, or whatever a restarted Redis
    brings back, a new generation is started as soon as it answers."""
    storage = FreshStaticFilesStorage()
    storage.hash_cache.verify()  # healthy: nothing to do
    first = storage.hash_cache.refresh().generation
    storage.hash_cache.verify()
    assert storage.hash_cache.refresh().generation == first
    redis_cache.stop()
    storage.hash_cache.verify()  # fails: noted
    redis_cache.start()  # empty: its generation is gone
    wait_for(
        lambda: (
            storage.hash_cache.verify()
            or storage.hash_cache.history.last not in (None, first)
        ),
        timeout=30,
        message="a new generation once Redis answers",
    )
    freshcache.expire_all()
    assert storage.hash_cache.refresh().generation not in (None, first)
