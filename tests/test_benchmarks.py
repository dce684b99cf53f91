"""The benchmark command runs end to end (at a tiny size: timings live there)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.utils import ROOT, subprocess_env

FIGURES = [
    "cold: hash every file (`hashstatic --all`)",
    "collectstatic + Manifest",
    "warm `url()` per call",
    "warm `url()`, Redis as the shared cache",
    "render 100 `{% static %}` tags",
    "edit → new URL, one process",
    "edit → new URL across processes",
    "memory of the memo",
    "watcher, inotify",
    "watcher, polling every 1 s",
    "scaling, 20 files",
]


@pytest.mark.subprocess
@pytest.mark.redis
def test_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/run.py",
            "--files",
            "40",
            "--rounds",
            "1",
            "--quick",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("| figure |", 1)[1]
    missing = [figure for figure in FIGURES if figure not in table]
    assert missing == []


@pytest.mark.subprocess
def test_serving_benchmark_smoke_run() -> None:
    if shutil.which("wrk") is None or shutil.which("curl") is None:
        pytest.skip("needs wrk and curl (scripts/bench-serving installs them)")
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/serving.py",
            "--contenders",
            "freshstatic,django",
            "--cases",
            "small,conditional",
            "--seconds",
            "1",
            "--warm-up",
            "0",
            "--rounds",
            "1",
            "--python-seconds",
            "0.1",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("| case | server |", 1)[1].split("\n\n", 1)[0]
    rows = table.splitlines()[2:]
    assert len(rows) == 4  # two cases for each of two servers
    assert "warning" not in result.stdout
