"""
django-freshstatic in production faults: the figures docs/reliability.md
names, each measured with real processes (redis-server, gunicorn,
watchstatic) beside its goal (DESIGN §4, §5).

    python benchmarks/production.py                # the full run
    python benchmarks/production.py --samples 200 --freeze-seconds 5   # shorter

- overlapping releases: release-2 pages whose js/app.js hash is not release
  2's, while release 1 also serves and after it stopped (goal: 0);
- Redis restored from an older RDB: seconds until pages carry the current
  hash again for good (goal: GENERATION_TTL + 1 s);
- a hung Redis (SIGSTOP): pages completed in a freeze against the same time
  healthy, without and with socket timeouts (goal: at least 50 %);
- peak RSS growth for distinct 3,000-character missing names through
  ``static()`` (goal: < 50 MB for 100,000) and for edits of a 1 MiB
  stylesheet each served through the middleware (goal: < 20 MB for 250).

Needs redis-server on PATH and the test dependencies (gunicorn, pytest).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.utils_production import (  # noqa: E402 (after the path is set)
    GENERATION_TTL_SECONDS,
    hung_redis,
    missing_names_memory,
    overlapping_releases,
    restored_snapshot,
    stylesheet_edits_memory,
)

# The example's production settings; django-redis's documented example.
SOCKET_TIMEOUTS_SECONDS = (1.0, 5.0)
HEAL_BOUND_SECONDS = 30.0


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, figure: str, value: str, goal: str, met: bool) -> None:
        row = (figure, value, goal, "met" if met else "**missed**")
        self.rows.append(row)
        print(f"  {figure}: {value} | {goal} | {row[3]}", flush=True)

    def markdown(self) -> str:
        lines = ["| figure | measured | goal | |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        return "\n".join(lines)


def releases(table: Table, workdir: Path, samples: int) -> None:
    result = overlapping_releases(workdir, samples)
    table.add(
        "overlapping releases: stale release-2 pages",
        f"{result.stale:,} of {result.samples:,} "
        f"({result.stale_during:,} while both served, "
        f"{result.stale_after:,} after release 1 stopped); "
        f"release 1: {result.release_1_stale:,} of {result.release_1_samples:,}",
        "0",
        result.stale == 0 and result.release_1_stale == 0,
    )


def snapshot(table: Table, workdir: Path) -> None:
    result = restored_snapshot(workdir, HEAL_BOUND_SECONDS)
    goal = GENERATION_TTL_SECONDS + 1.0
    if result.healed and result.heal_seconds is not None:
        value = f"healed after {result.heal_seconds:.2f} s"
    else:
        value = f"not healed in {HEAL_BOUND_SECONDS:g} s"
    table.add(
        "Redis restored from an older snapshot: time to heal",
        f"{value} ({result.stale:,} of {result.samples:,} pages stale)",
        f"≤ {goal:g} s",
        result.healed and (result.heal_seconds or 0.0) <= goal,
    )


def freeze(table: Table, workdir: Path, seconds: float) -> None:
    variants: list[tuple[str, float | None]] = [("no socket timeouts", None)]
    variants += [(f"socket timeouts {t:g} s", t) for t in SOCKET_TIMEOUTS_SECONDS]
    for label, timeout in variants:
        result = hung_redis(workdir / f"freeze-{timeout}", seconds, timeout)
        share = result.frozen / result.healthy if result.healthy else 0.0
        table.add(
            f"Redis frozen {seconds:g} s ({label}): pages completed",
            f"{result.frozen:,} frozen vs {result.healthy:,} healthy "
            f"({share:.0%}); {result.frozen_without_hashes} without a hash, "
            f"{result.errors} errors",
            "≥ 50 % of healthy",
            share >= 0.5 and result.frozen_without_hashes == 0,
        )


def memory(table: Table, workdir: Path, names: int, edits: int) -> None:
    result = missing_names_memory(workdir / "names", names)
    table.add(
        f"peak RSS growth, {names:,} missing 3,000-character names",
        f"{result.growth_mb:.0f} MB (peak {result.before_mib:.0f} → "
        f"{result.after_mib:.0f} MiB)",
        "< 50 MB",
        result.growth_mb < 50,
    )
    result = stylesheet_edits_memory(workdir / "edits", edits)
    table.add(
        f"peak RSS growth, {edits:,} edits of a 1 MiB stylesheet served",
        f"{result.growth_mb:.0f} MB (peak {result.before_mib:.0f} → "
        f"{result.after_mib:.0f} MiB)",
        "< 20 MB",
        result.growth_mb < 20,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=1000, help="release-2 pages sampled"
    )
    parser.add_argument("--freeze-seconds", type=float, default=10.0)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--edits", type=int, default=250)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    import django

    import freshstatic

    print(
        f"freshstatic from {Path(freshstatic.__file__).parent}, "
        f"Django {django.get_version()}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="freshstatic-production-"))
    try:
        table = Table()
        releases(table, workdir / "releases", args.samples)
        snapshot(table, workdir / "snapshot")
        freeze(table, workdir / "freeze", args.freeze_seconds)
        memory(table, workdir / "memory", args.names, args.edits)
        print()
        print(f"Measured {time.strftime('%Y-%m-%d')}.\n")
        print(table.markdown())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
