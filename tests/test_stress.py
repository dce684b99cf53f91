"""
Stale-freedom under concurrency, with real watchdog, real files and (for the
multi-process run) a real Redis shared by real processes.

Each interleaving: readers call url() all the time while a writer applies a
random burst of edits (write in place, write-temp-then-rename, delete,
recreate, rename one file onto another); then the writes stop, the watcher's
batch lands, and every URL must carry the hash of the final bytes (or no hash
for a deleted file). FRESHSTATIC_STRESS sets the number of interleavings
(the slow run: FRESHSTATIC_STRESS=1000).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshstatic.signals import static_changed
from freshstatic.storage import FreshStaticFilesStorage
from freshstatic.watcher import Watcher
from tests.utils import ROOT, RedisServer, StaticTree, sha, subprocess_env, wait_for

INTERLEAVINGS = int(os.environ.get("FRESHSTATIC_STRESS", "200"))
NAMES = [f"stress/{index}.css" for index in range(5)]


class Writer:
    """Random edits in every save style; remembers what each name holds."""

    def __init__(self, tree: StaticTree, seed: int) -> None:
        self.tree = tree
        self.rng = random.Random(seed)
        self.content: dict[str, bytes | None] = {}
        for name in NAMES:
            self.write(name)

    def write(self, name: str) -> None:
        data = self.rng.randbytes(self.rng.choice([0, 10, 5000, 200_000]))
        self.tree.write(name, data)
        self.content[name] = data

    def burst(self) -> int:
        operations = self.rng.randint(1, 6)
        for _ in range(operations):
            name = self.rng.choice(NAMES)
            path = self.tree.path(name)
            action = self.rng.choice(
                ["in place", "temp rename", "delete", "rename onto"]
            )
            if action == "in place" or (action != "temp rename" and not path.exists()):
                self.write(name)
            elif action == "temp rename":
                data = self.rng.randbytes(self.rng.choice([1, 3000, 100_000]))
                temp = path.with_name(f".{path.name}.{self.rng.randrange(1 << 30)}.tmp")
                temp.parent.mkdir(parents=True, exist_ok=True)
                temp.write_bytes(data)
                os.replace(temp, path)
                self.content[name] = data
            elif action == "delete":
                path.unlink()
                self.content[name] = None
            else:
                other = self.rng.choice([n for n in NAMES if n != name])
                os.replace(path, self.tree.path(other))
                self.content[other], self.content[name] = self.content[name], None
        return operations

    def expected(self, name: str) -> str:
        data = self.content[name]
        return f"/static/{name}" if data is None else f"/static/{name}?v={sha(data)}"


class Settled:
    """Waits for the watcher's batch that follows a sentinel write."""

    def __init__(self, tree: StaticTree) -> None:
        self.tree = tree
        self.seen = threading.Event()
        self.token = ""
        static_changed.connect(self.receive)

    def receive(
        self, sender: object, names: tuple[str, ...] | None, **kwargs: object
    ) -> None:
        if names and self.token in names:
            self.seen.set()

    def wait(self, index: int) -> None:
        self.seen.clear()
        self.token = f"sentinel/{index}.txt"
        self.tree.write(self.token, b"s")
        assert self.seen.wait(30), "the watcher never reported the sentinel"

    def close(self) -> None:
        static_changed.disconnect(self.receive)


@pytest.fixture
def settled(static_tree: StaticTree) -> Iterator[Settled]:
    helper = Settled(static_tree)
    yield helper
    helper.close()


def test_no_stale_url_after_random_interleavings(
    static_tree: StaticTree, settled: Settled
) -> None:
    writer = Writer(static_tree, seed=1121)
    storage = FreshStaticFilesStorage()
    watcher = Watcher(debounce=0.02)
    watcher.start()
    stop = threading.Event()

    def read() -> None:
        rng = random.Random()
        while not stop.is_set():
            storage.url(rng.choice(NAMES))
            time.sleep(0)  # yield the GIL to the writer and the watcher; not a wait

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    stale: list[tuple[int, str, str]] = []
    operations = 0
    try:
        for index in range(INTERLEAVINGS):
            operations += writer.burst()
            settled.wait(index)
            for name in NAMES:
                url = storage.url(name)
                if url != writer.expected(name):
                    stale.append((index, name, url))
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
        watcher.stop()
    print(f"{INTERLEAVINGS} interleavings, {operations} edits, {len(stale)} stale")
    assert stale == []


WORKER = textwrap.dedent(
    """
    import json, random, sys, threading, django
    django.setup()
    from freshstatic.storage import FreshStaticFilesStorage

    names = json.loads(sys.argv[1])
    storage = FreshStaticFilesStorage()

    def hammer():
        rng = random.Random()
        while True:
            storage.url(rng.choice(names))

    for _ in range(2):
        threading.Thread(target=hammer, daemon=True).start()
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps({name: storage.url(name) for name in names}), flush=True)
    """
)


@pytest.mark.redis
@pytest.mark.subprocess
def test_no_stale_url_in_other_processes_through_redis(
    static_tree: StaticTree, settled: Settled, redis_cache: RedisServer
) -> None:
    writer = Writer(static_tree, seed=2026)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(NAMES)],
            cwd=ROOT,
            env=subprocess_env(
                DJANGO_SETTINGS_MODULE="tests.settings",
                FRESHSTATIC_TEST_REDIS=redis_cache.url,
                FRESHSTATIC_TEST_STATIC_DIR=str(static_tree.plain),
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    watcher = Watcher(debounce=0.02)
    late = 0
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        watcher.start()

        def ask(worker: subprocess.Popen[str]) -> dict[str, str]:
            assert worker.stdin is not None
            assert worker.stdout is not None
            worker.stdin.write("urls\n")
            worker.stdin.flush()
            return dict(json.loads(worker.stdout.readline()))

        rounds = max(1, INTERLEAVINGS // 2)
        for index in range(rounds):
            writer.burst()
            settled.wait(index)
            expected = {name: writer.expected(name) for name in NAMES}
            for worker in workers:
                # Announced over pub/sub within milliseconds; a URL that is
                # not fresh at all is stale (the wait is generous: a busy
                # machine can delay the news, never change it).
                if ask(worker) != expected:
                    late += 1
                    wait_for(
                        lambda worker=worker, expected=expected: (
                            ask(worker) == expected
                        ),  # type: ignore[misc]
                        timeout=30,
                        message="another process to serve fresh URLs",
                    )
    finally:
        watcher.stop()
        for worker in workers:
            worker.kill()
            worker.wait(timeout=30)
    print(
        f"{rounds} interleavings x {len(workers)} processes: 0 stale; "
        f"{late} answers needed the announcement to arrive first"
    )


def test_writer_helper_tracks_renames(static_tree: StaticTree) -> None:
    writer = Writer(static_tree, seed=7)
    for _ in range(50):
        writer.burst()
    for name in NAMES:
        path: Path = static_tree.path(name)
        data = writer.content[name]
        assert (path.read_bytes() if path.exists() else None) == data
