"""
Edit-to-new-URL latency, in one process and across processes through Redis
with ``watchstatic``, and the idle CPU of ``watchstatic``.

Usage (redis-server on PATH): python benchmarks/quick_latency.py [EDITS]
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

EDITS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
IDLE_SECONDS = 10
IDLE_FILES = 5000


def expected_url(name: str, data: bytes) -> str:
    return f"/static/{name}?v={hashlib.sha256(data).hexdigest()[:12]}"


def measure(storage, folder: Path, name: str) -> list[float]:  # type: ignore[no-untyped-def]
    """
    Seconds from the end of each write to url() carrying the new hash, under
    steady traffic (a thread calling url() every millisecond), so that the
    generation re-reads fall at random points relative to the edits.
    """
    done = threading.Event()

    def traffic() -> None:
        while not done.wait(0.001):
            storage.url(name)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        return _measure(storage, folder, name)
    finally:
        done.set()
        thread.join()


def _measure(storage, folder: Path, name: str) -> list[float]:  # type: ignore[no-untyped-def]
    latencies = []
    path = folder / name
    for index in range(EDITS):
        # Let the previous edit's batch land (the traffic keeps the memo
        # warm), for a random while so edits do not fall into step with
        # GENERATION_TTL.
        time.sleep(random.uniform(0.2, 1.2))
        data = f"body {{ --edit: {index}; }}".encode() + os.urandom(8).hex().encode()
        path.write_bytes(data)
        written = time.perf_counter()
        target = expected_url(name, data)
        deadline = written + 10
        while storage.url(name) != target:
            if time.perf_counter() > deadline:
                raise SystemExit(f"edit {index} never reached the URL")
            time.sleep(0.0005)
        latencies.append(time.perf_counter() - written)
    return latencies


def report(label: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{label:44} median {statistics.median(ordered) * 1000:7.1f} ms"
        f"   p95 {p95 * 1000:7.1f} ms   ({len(ordered)} edits)"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    import django
    from django.conf import settings

    work = Path(tempfile.mkdtemp(prefix="freshstatic-latency-"))
    static = work / "static"
    static.mkdir()
    (static / "site.css").write_bytes(b"start")
    settings.STATICFILES_DIRS = [str(static)]
    django.setup()
    from django.test import override_settings
    from tests.conftest import RedisServer, subprocess_env

    from freshstatic.storage import FreshStaticFilesStorage
    from freshstatic.watcher import Watcher

    watcher = Watcher()
    watcher.start()
    try:
        report(
            "one process (LocMem, watcher thread)",
            measure(FreshStaticFilesStorage(), static, "site.css"),
        )
    finally:
        watcher.stop()

    redis = RedisServer(work)
    redis.start()
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.settings",
        FRESHSTATIC_TEST_REDIS=redis.url,
        FRESHSTATIC_TEST_STATIC_DIR=str(static),
    )
    command = subprocess.Popen(
        [sys.executable, "-u", "-m", "django", "watchstatic"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert command.stdout is not None
        while "Ctrl-C" not in command.stdout.readline():
            pass
        redis_cache = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": redis.url,
            }
        }
        for ttl in (1.0, 0.1):
            with override_settings(
                CACHES=redis_cache, FRESHSTATIC={"GENERATION_TTL": ttl}
            ):
                report(
                    f"across processes (Redis, watchstatic, TTL {ttl:g} s)",
                    measure(FreshStaticFilesStorage(), static, "site.css"),
                )
    finally:
        command.terminate()
        command.wait(timeout=30)

    # Idle CPU of watchstatic over a large tree.
    for index in range(IDLE_FILES):
        folder = static / f"tree/{index % 250}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.css").write_bytes(b"x" * 64)
    for mode in ([], ["--poll", "1"]):
        idle = subprocess.Popen(
            [sys.executable, "-u", "-m", "django", "watchstatic", *mode],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert idle.stdout is not None
            while "Ctrl-C" not in idle.stdout.readline():
                pass
            start = cpu_seconds(idle.pid)
            time.sleep(IDLE_SECONDS)
            used = cpu_seconds(idle.pid) - start
            label = "polling every 1 s" if mode else "inotify"
            print(
                f"watchstatic idle CPU, {IDLE_FILES} files in 250 folders, {label}: "
                f"{used / IDLE_SECONDS * 100:.2f} % of one core"
            )
        finally:
            idle.terminate()
            idle.wait(timeout=30)
    redis.stop()


if __name__ == "__main__":
    main()
