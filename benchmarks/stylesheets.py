"""
How long reading a stylesheet takes, on well-formed and on malformed input
(DESIGN §5: linear on any input; goal: a 1 MB malformed stylesheet in < 1 s).

    python benchmarks/stylesheets.py [--megabytes N]

Each case is the median of 5 rewrites of the same text, with every reference
passed through a function that returns it unchanged.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from freshstatic import css


def cases(size: int) -> dict[str, str]:
    return {
        "well-formed (url() every line)": (".a{background:url(img/a.png)}\n")
        * (size // 30),
        "unterminated string of escaped quotes": "a{content:'" + "\\'" * (size // 2),
        "a million url(": "url(" * (size // 4),
        "unclosed url( then text": "a{b:url(" + "x" * size,
        "unclosed comments": "/*" * (size // 2),
        "quoted url( lines never closed": ("url('" + "x" * 50 + "\n") * (size // 56),
    }


def median_seconds(run: Callable[[], object], rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=float, default=1.0)
    args = parser.parse_args()
    size = int(args.megabytes * 1_000_000)
    print(f"| stylesheet ({args.megabytes:g} MB) | rewrite time |")
    print("| --- | --- |")
    for label, text in cases(size).items():
        seconds = median_seconds(lambda text=text: css.rewrite(text, str))
        print(f"| {label} | {seconds * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
