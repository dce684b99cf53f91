"""
django-freshstatic benchmarks: every figure beside its peer, measured in the
same run on the same synthetic tree (DESIGN §5).

    python benchmarks/run.py                 # 5,000 files, the full table
    python benchmarks/run.py --write-docs    # ...and update docs/performance.md
    python benchmarks/run.py --files 60 --quick   # a smoke run

Needs redis-server on PATH for the Redis rows (skipped, and said so, without).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEDIAN_FILE_BYTES = 8 * 1024
SIGMA = math.sqrt(2 * math.log(2))  # mean = 2 x median: ~16 KB, ~80 MB for 5,000
KINDS = [("css", 0.4), ("js", 0.3), ("png", 0.2), ("jpg", 0.1)]
RESULTS_START = "<!-- benchmark results start -->"
RESULTS_END = "<!-- benchmark results end -->"


# -- the tree -------------------------------------------------------------------


def build_tree(root: Path, files: int, folders: int, seed: int = 5000) -> list[str]:
    """Files of log-normal size in ``folders`` folders; returns their names."""
    rng = random.Random(seed)
    names = []
    kinds = [kind for kind, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    for index in range(files):
        kind = rng.choices(kinds, weights)[0]
        size = int(
            min(max(rng.lognormvariate(math.log(MEDIAN_FILE_BYTES), SIGMA), 64), 4e6)
        )
        name = f"{kind}/d{index % folders:03d}/f{index}.{kind}"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("css", "js"):
            line = f".c{index} {{ color: #{rng.randrange(1 << 24):06x}; }}\n".encode()
            path.write_bytes((line * (size // len(line) + 1))[:size])
        else:
            path.write_bytes(rng.randbytes(size))
        names.append(name)
    return names


def tree_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


# -- Django -------------------------------------------------------------------------


def configure(
    source: Path, redis_url: str | None, shared_default: bool = False
) -> None:
    from django.conf import settings

    caches: dict[str, Any] = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }
    if redis_url:
        caches["redis"] = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
        }
        if shared_default:  # not through OPTIONS: Django 4.2's configure() drops them
            caches["default"] = caches["redis"]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmarks",
        INSTALLED_APPS=["freshstatic", "django.contrib.staticfiles"],
        DATABASES={},
        CACHES=caches,
        STATIC_URL="/static/",
        STATIC_ROOT=None,
        STATICFILES_DIRS=[str(source)],
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "freshstatic.storage.FreshStaticFilesStorage"},
        },
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        FRESHSTATIC={"WATCH": False},
        LOGGING_CONFIG=None,
    )
    import django

    django.setup()


def reset_hashes() -> None:
    """Forget every hash, shared or kept in this process: a cold start."""
    from django.core.cache import caches

    from freshstatic import cache, served

    for alias in caches:
        caches[alias].clear()
    cache.expire_all()
    served.forget_versions()


# -- measuring ----------------------------------------------------------------------


def median_seconds(run: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def per_call_ns(call: Callable[[str], object], names: list[str], rounds: int) -> float:
    loops = max(1, 200_000 // len(names))

    def run() -> None:
        for _ in range(loops):
            for name in names:
                call(name)

    return median_seconds(run, rounds) / (loops * len(names)) * 1e9


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, figure: str, value: str, peer: str, ratio: str) -> None:
        self.rows.append((figure, value, peer, ratio))
        print(f"  {figure}: {value} | {peer} | {ratio}", flush=True)

    def markdown(self) -> str:
        lines = [
            "| figure | freshstatic | peer, same run | ratio |",
            "|---|---|---|---|",
        ]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        return "\n".join(lines)


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


# -- Redis ----------------------------------------------------------------------------


@contextmanager
def redis_server(workdir: Path) -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server not found: Redis rows skipped", flush=True)
        yield None
        return
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=30)


def redis_commands(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


# -- the figures ----------------------------------------------------------------------


def warm_url(
    table: Table, names: list[str], collected: Path, redis_url: str | None, rounds: int
) -> None:
    from django.contrib.staticfiles.storage import (
        ManifestStaticFilesStorage,
        StaticFilesStorage,
    )

    from freshstatic.storage import FreshStaticFilesStorage

    sample = names[:100]
    plain = per_call_ns(StaticFilesStorage().url, sample, rounds)
    manifest = per_call_ns(
        ManifestStaticFilesStorage(location=str(collected)).url, sample, rounds
    )
    fresh_storage = FreshStaticFilesStorage()
    for name in sample:
        fresh_storage.url(name)
    fresh = per_call_ns(fresh_storage.url, sample, rounds)
    table.add(
        "warm `url()` per call",
        f"{fresh:.0f} ns",
        f"plain {plain:.0f} ns",
        f"{fresh / plain:.3f}× plain",
    )
    table.add(
        "warm `url()` per call",
        f"{fresh:.0f} ns",
        f"Manifest {manifest:.0f} ns",
        f"{manifest / fresh:.0f}× faster than Manifest",
    )
    if redis_url:
        shared = FreshStaticFilesStorage(cache_alias="redis")
        for name in sample:
            shared.url(name)
        before = redis_commands(redis_url)
        via_redis = per_call_ns(shared.url, sample, rounds)
        calls = max(1, 200_000 // len(sample)) * len(sample) * rounds
        trips = redis_commands(redis_url) - before - 1
        table.add(
            "warm `url()`, Redis as the shared cache",
            f"{via_redis:.0f} ns ({trips} round trips in {calls:,} calls)",
            f"LocMem {fresh:.0f} ns",
            f"{via_redis / fresh:.2f}× LocMem",
        )


def render(table: Table, names: list[str], collected: Path, rounds: int) -> None:
    from django.template import Context, Template
    from django.test import override_settings

    source = "{% load static %}" + "".join(
        f'{{% static "{name}" %}}\n' for name in names[:100]
    )
    template = Template(source)

    def timing(backend: str, **extra: Any) -> float:
        with override_settings(STORAGES={"staticfiles": {"BACKEND": backend}}, **extra):
            template.render(Context())
            return (
                median_seconds(
                    lambda: [template.render(Context()) for _ in range(50)], rounds
                )
                / 50
            )

    plain = timing("django.contrib.staticfiles.storage.StaticFilesStorage")
    manifest = timing(
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
        STATIC_ROOT=str(collected),
    )
    fresh = timing("freshstatic.storage.FreshStaticFilesStorage")
    table.add(
        "render 100 `{% static %}` tags",
        fmt_seconds(fresh),
        f"plain {fmt_seconds(plain)}",
        f"{fresh / plain:.2f}× plain",
    )
    table.add(
        "render 100 `{% static %}` tags",
        fmt_seconds(fresh),
        f"Manifest {fmt_seconds(manifest)}",
        f"{manifest / fresh:.1f}× faster than Manifest",
    )


# `hashstatic --all`, on every core, against one thread reading and hashing.
HASH_ALL_GOAL_RAW_RATIO = 1.0


def raw_ratio(fresh: float, raw: float) -> str:
    ratio = fresh / raw
    met = "met" if ratio <= HASH_ALL_GOAL_RAW_RATIO else "missed"
    return f"{ratio:.2f}× raw (goal ≤ {HASH_ALL_GOAL_RAW_RATIO:.1f}×: {met})"


def raw_hash(source: Path) -> float:
    """One thread listing the tree, reading and SHA-256ing every file."""

    def run() -> None:
        for path in source.rglob("*"):
            if path.is_file():
                hashlib.sha256(path.read_bytes()).hexdigest()

    run()  # the page cache holds the tree for every contender
    return median_seconds(run, 3)


def hash_all(source: Path, rounds: int) -> float:
    """
    ``hashstatic --all`` as it runs: in a process of its own, which no other
    thread shares; timed from inside it, start-up excluded.
    """
    result = subprocess.run(
        [sys.executable, __file__, "--hash-all", str(source), f"--rounds={rounds}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.split()[-1])


def hash_all_here(source: Path, rounds: int) -> float:
    configure(source, None)
    from django.core.management import call_command

    def run() -> None:
        reset_hashes()
        call_command("hashstatic", "--all", stdout=io.StringIO(), stderr=io.StringIO())

    return median_seconds(run, rounds)


def collectstatic(backend: str, collected: Path) -> float:
    from django.core.management import call_command
    from django.test import override_settings

    shutil.rmtree(collected, ignore_errors=True)
    with override_settings(
        STORAGES={"staticfiles": {"BACKEND": backend}}, STATIC_ROOT=str(collected)
    ):
        started = time.perf_counter()
        call_command("collectstatic", interactive=False, verbosity=0)
        return time.perf_counter() - started


def cold(table: Table, source: Path, collected: Path, rounds: int, quick: bool) -> None:
    raw = raw_hash(source)
    fresh = hash_all(source, rounds)
    table.add(
        "cold: hash every file (`hashstatic --all`)",
        fmt_seconds(fresh),
        f"raw read + SHA-256 {fmt_seconds(raw)}",
        raw_ratio(fresh, raw),
    )
    manifest = collectstatic(
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage", collected
    )
    table.add(
        "cold: hash every file",
        fmt_seconds(fresh),
        f"collectstatic + Manifest {fmt_seconds(manifest)}",
        f"{manifest / fresh:.0f}× faster",
    )
    if not quick:
        whitenoise = collectstatic(
            "whitenoise.storage.CompressedManifestStaticFilesStorage", collected / "wn"
        )
        table.add(
            "cold: hash every file",
            fmt_seconds(fresh),
            f"collectstatic + WhiteNoise Compressed {fmt_seconds(whitenoise)}",
            f"{whitenoise / fresh:.0f}× faster",
        )
    # Leave a Manifest tree for the warm figures.
    collectstatic(
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage", collected
    )


def latency(table: Table, source: Path, redis_url: str | None, edits: int) -> None:
    from django.test import override_settings

    from freshstatic.storage import FreshStaticFilesStorage
    from freshstatic.watcher import Watcher

    folder = source / "latency"
    folder.mkdir(exist_ok=True)
    (folder / "edit.css").write_bytes(b"start")
    watcher = Watcher()
    watcher.start()
    try:
        local = measure_latency(FreshStaticFilesStorage(), folder, edits)
    finally:
        watcher.stop()
    table.add(
        "edit → new URL, one process (watcher thread)",
        percentiles(local),
        "—",
        "goal: p95 < 50 ms",
    )
    if not redis_url:
        return
    env = dict(
        os.environ,
        BENCH_SOURCE=str(source),
        BENCH_REDIS=redis_url,
        PYTHONPATH=str(ROOT),
    )
    command = subprocess.Popen(
        [sys.executable, "-u", str(Path(__file__).resolve()), "--watchstatic"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert command.stdout is not None
        while "Ctrl-C" not in command.stdout.readline():
            if command.poll() is not None:
                raise SystemExit("watchstatic did not start")
        for ttl in (1.0, 0.1):
            with override_settings(FRESHSTATIC={"WATCH": False, "GENERATION_TTL": ttl}):
                shared = measure_latency(
                    FreshStaticFilesStorage(cache_alias="redis"), folder, edits
                )
            table.add(
                f"edit → new URL across processes (Redis + `watchstatic`, GENERATION_TTL {ttl:g} s)",
                percentiles(shared),
                "—",
                "goal: p95 < 300 ms",
            )
    finally:
        command.terminate()
        command.wait(timeout=30)


def measure_latency(storage: Any, folder: Path, edits: int) -> list[float]:
    """Seconds from each write to url() carrying the new hash, under steady
    traffic (url() every millisecond), so generation re-reads fall at random
    points relative to the edits."""
    name = "latency/edit.css"
    done = threading.Event()

    def traffic() -> None:
        while not done.wait(0.001):
            storage.url(name)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    rng = random.Random(50)
    samples = []
    try:
        for index in range(edits):
            time.sleep(rng.uniform(0.2, 1.2))
            data = f"/* edit {index} {rng.random()} */".encode()
            (folder / "edit.css").write_bytes(data)
            written = time.perf_counter()
            target = f"?v={hashlib.sha256(data).hexdigest()[:12]}"
            while not storage.url(name).endswith(target):
                if time.perf_counter() - written > 10:
                    raise SystemExit(f"edit {index} never reached the URL")
                time.sleep(0.0005)
            samples.append(time.perf_counter() - written)
    finally:
        done.set()
        thread.join()
    return samples


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return f"median {statistics.median(ordered) * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms ({len(ordered)} edits)"


def memo_memory(table: Table, names: list[str]) -> None:
    from freshstatic.storage import FreshStaticFilesStorage

    storage = FreshStaticFilesStorage()
    reset_hashes()
    for name in names:
        storage.url(name)
    memo = storage.hash_cache.state.memo
    size = sys.getsizeof(memo) + sum(
        sys.getsizeof(k) + sys.getsizeof(v) for k, v in memo.items()
    )
    table.add(
        f"memory of the memo, {len(memo):,} names",
        f"{size / 2**20:.2f} MiB",
        "—",
        "goal: < 5 MB for 10,000",
    )


def watcher_cost(table: Table, seconds: float) -> None:
    from django.test import override_settings

    from freshstatic.watcher import Watcher

    for label, poll in (("inotify", None), ("polling every 1 s", 1.0)):
        with override_settings(FRESHSTATIC={"WATCH": False, "POLL": poll or False}):
            watcher = Watcher()
            started = time.perf_counter()
            watcher.start()
            startup = time.perf_counter() - started
            cpu_before = time.process_time()
            time.sleep(seconds)
            idle = (time.process_time() - cpu_before) / seconds * 100
            watcher.stop()
        table.add(
            f"watcher, {label}: start-up / idle CPU over {seconds:g} s",
            f"{fmt_seconds(startup)} / {idle:.2f} % of a core",
            "—",
            "goal: ~0 % idle with inotify",
        )


def scaling(table: Table, sizes: list[int], workdir: Path, rounds: int) -> None:
    from django.test import override_settings

    from freshstatic.storage import FreshStaticFilesStorage

    for files in sizes:
        source = workdir / f"scale-{files}"
        names = build_tree(source, files, max(1, files // 20), seed=files)
        with override_settings(STATICFILES_DIRS=[str(source)]):
            raw = raw_hash(source)
            fresh = hash_all(source, rounds)
            storage = FreshStaticFilesStorage()
            for name in names[:100]:
                storage.url(name)
            warm = per_call_ns(storage.url, names[:100], rounds)
        table.add(
            f"scaling, {files:,} files: `hashstatic --all` / warm `url()`",
            f"{fmt_seconds(fresh)} / {warm:.0f} ns",
            f"raw read + SHA-256 {fmt_seconds(raw)}",
            raw_ratio(fresh, raw),
        )
        shutil.rmtree(source)


# -- the report ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import django

    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, Django {django.get_version()}"
    )


def write_docs(text: str) -> None:
    page = ROOT / "docs" / "performance.md"
    content = page.read_text()
    start, end = content.index(RESULTS_START), content.index(RESULTS_END)
    page.write_text(
        content[: start + len(RESULTS_START)] + "\n" + text + "\n" + content[end:]
    )
    print(f"Results written to {page.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: tiny scaling, 1 s idle"
    )
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--watchstatic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hash-all", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hash_all:  # the process of one `hashstatic --all` figure
        print(hash_all_here(args.hash_all, args.rounds))
        return
    if args.watchstatic:  # the other process of the latency figure
        configure(
            Path(os.environ["BENCH_SOURCE"]),
            os.environ["BENCH_REDIS"],
            shared_default=True,
        )
        from django.core.management import call_command

        call_command("watchstatic")
        return

    workdir = Path(tempfile.mkdtemp(prefix="freshstatic-bench-"))
    try:
        source, collected = workdir / "static", workdir / "collected"
        folders = max(1, args.files // 20)
        names = build_tree(source, args.files, folders)
        print(
            f"Tree: {args.files:,} files in {folders} folders, {tree_bytes(source) / 2**20:.0f} MiB",
            flush=True,
        )
        with redis_server(workdir) as redis_url:
            configure(source, redis_url)
            table = Table()
            cold(table, source, collected, args.rounds, args.quick)
            warm_url(table, names, collected, redis_url, args.rounds)
            render(table, names, collected, args.rounds)
            latency(
                table, source, redis_url, max(3, args.edits if not args.quick else 5)
            )
            watcher_cost(table, 10.0 if not args.quick else 1.0)
            memo_memory(
                table, build_memo_names(source, 10_000 if not args.quick else 200)
            )
            scaling(
                table,
                [20, 40] if args.quick else [1000, 2000, 5000, 20000],
                workdir,
                max(1, args.rounds // 2),
            )
        report = (
            f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; {args.files:,}-file tree "
            f"({tree_bytes(source) / 2**20:.0f} MiB), medians of {args.rounds} rounds.\n\n"
            + table.markdown()
        )
        print()
        print(report)
        if args.write_docs:
            write_docs(report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def build_memo_names(source: Path, count: int) -> list[str]:
    folder = source / "memo"
    for index in range(count):
        path = folder / f"m{index // 500}" / f"n{index}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return [f"memo/m{index // 500}/n{index}.js" for index in range(count)]


if __name__ == "__main__":
    main()
