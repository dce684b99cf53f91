"""
Updates as deltas (DESIGN §5, §10): what a returning browser downloads for a
500 KB script edited in a few places, what the delta costs to make and to
serve, and what the version store takes per version.
Goal: the delta under 2 % of the file.

    python benchmarks/deltas.py [--kilobytes 500] [--edits 3] [--versions 20]

Bytes on the wire are the response body for the new version: sent as it is,
with each coding at freshstatic's levels (gzip 9, br 11, zstd 19), and as a
dcz delta against the version the browser has (RFC 9842: 40-byte header and
a zstd frame). Times are medians, on this machine, of the same work repeated.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import django
from django.conf import settings


def script(size: int, seed: int = 1) -> bytes:
    """A JavaScript module of about ``size`` bytes, varied like real code."""
    rng = random.Random(seed)
    words = ["const", "let", "return", "function", "value", "item", "index", "=>"]
    lines: list[str] = []
    total = 0
    while total < size:
        line = (
            f"export function f{len(lines)}(a, b) {{ "
            + " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
            + f" return a * {rng.randint(0, 10**6)} + b; }}\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def edit(data: bytes, edits: int, seed: int) -> bytes:
    """``data`` with ``edits`` lines replaced, spread over the file."""
    rng = random.Random(seed)
    lines = data.decode().splitlines(keepends=True)
    for number in rng.sample(range(len(lines)), edits):
        lines[number] = f"export const edited{number} = {rng.randint(0, 10**6)};\n"
    return "".join(lines).encode()


def median_seconds(run: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def kib(size: float) -> str:
    return f"{size / 1024:,.1f} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kilobytes", type=int, default=500)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="freshstatic-deltas-"))
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        INSTALLED_APPS=["freshstatic", "django.contrib.staticfiles"],
        STATIC_URL="/static/",
        STATICFILES_DIRS=[str(work / "static")],
        FRESHSTATIC={"VERSIONS": str(work / "versions")},
    )
    django.setup()

    from django.test import RequestFactory

    from freshstatic import compress, delta, versions
    from freshstatic.served import Served

    old = script(args.kilobytes * 1000)
    new = edit(old, args.edits, seed=2)
    size = len(new)
    print(
        f"A {kib(size)} script, {args.edits} lines edited; a returning browser "
        "has the previous version.\n"
    )
    print("| sent as | bytes on the wire | share of the file |")
    print("| --- | --- | --- |")
    rows = [("identity", size)]
    for coding in ("gzip", "br", "zstd"):
        if compress.compressor(coding) is not None:
            level = compress.DEFAULT_LEVELS[coding]
            encoded = compress.compress(new, coding, level)
            rows.append((f"{coding} (level {level})", len(encoded)))
    body = delta.dcz(old, new)
    rows.append(("dcz delta (zstd 19 against the old version)", len(body)))
    for label, length in rows:
        print(f"| {label} | {length:,} | {100 * length / size:.2f} % |")
    goal = "met" if len(body) < size * 0.02 else "NOT met"
    print(f"\nGoal (delta under 2 % of the file): {goal}.\n")

    compute = median_seconds(lambda: delta.dcz(old, new), args.rounds)
    zstd_once = median_seconds(lambda: compress.compress(new, "zstd", 19), args.rounds)
    # Serving it warm: what the middleware asks per request once the delta
    # is kept (parse the headers, find the delta in memory).
    store = versions.store()
    assert store is not None
    store.put("js/app.js", old, algorithm="sha256", version=_sha(old)[:12])
    request = RequestFactory().get(
        "/static/js/app.js",
        headers={
            "accept-encoding": "gzip, deflate, br, zstd, dcb, dcz",
            "available-dictionary": _available(old),
        },
    )
    served = Served(_sha(new), size, None, body=new)
    assert delta.negotiate(request, served) is not None  # computed and kept
    warm_rounds = 2000
    warm = median_seconds(
        lambda: [delta.negotiate(request, served) for _ in range(warm_rounds)],
        args.rounds,
    )
    print("| work | time |")
    print("| --- | --- |")
    print(
        f"| compute the delta once (zstd 19 with the dictionary) | {compute * 1000:.0f} ms |"
    )
    print(f"| for comparison: zstd 19 of the file, once | {zstd_once * 1000:.0f} ms |")
    print(
        f"| serve it warm (per request, kept in memory) | {warm / warm_rounds * 1e6:.1f} µs |"
    )

    # The store: one version per edit, as a deploy after each would keep.
    kept = work / "store"
    measured = versions.VersionStore(str(kept), max_bytes=None, max_age_seconds=None)
    current = old
    raw = 0
    put_times = []
    for number in range(args.versions):
        started = time.perf_counter()
        measured.put(
            "js/app.js", current, algorithm="sha256", version=_sha(current)[:12]
        )
        put_times.append(time.perf_counter() - started)
        raw += len(current)
        current = edit(current, args.edits, seed=100 + number)
    usage = measured.usage()
    overhead = (usage.bytes - raw) / args.versions
    print(f"\n| version store, {args.versions} versions of the script | |")
    print("| --- | --- |")
    print(
        f"| on disk | {kib(usage.bytes)} ({usage.objects} files of bytes, {usage.refs} names) |"
    )
    print(f"| the versions' own bytes | {kib(raw)} |")
    print(f"| overhead per version (name file, blocks) | {overhead:,.0f} bytes |")
    print(
        f"| writing a new version (write, fsync, rename) | {statistics.median(put_times) * 1000:.1f} ms |"
    )
    old_version = _sha(old)[:12]
    again = median_seconds(
        lambda: measured.put("js/app.js", old, algorithm="sha256", version=old_version),
        args.rounds,
    )
    print(f"| keeping a version kept already (in memory) | {again * 1e6:.1f} µs |")
    found = median_seconds(
        lambda: measured.find("js/app.js", old_version, algorithm="sha256"),
        args.rounds,
    )
    print(
        f"| finding an old version (read and check its SHA-256) | {found * 1000:.2f} ms |"
    )


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _available(data: bytes) -> str:
    import base64
    import hashlib

    return ":" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


if __name__ == "__main__":
    main()
