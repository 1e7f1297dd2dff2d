"""Every benchmark runs at a tiny size, so none can rot unnoticed; the figures are not judged
here (the machines are shared and noisy), only that each run completes and reports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "args", "reported"),
    [
        ("stream_overhead.py", ["--smoke"], "time ratio magic/raw"),
        ("interrupt.py", ["--repeat", "1"], "hostile flood"),
        ("widget_stream.py", ["--smoke"], "bytes ÷ answer"),
        ("store.py", ["--messages", "200", "--exchanges", "20", "--runs", "1"], "load 200"),
        (
            "tools_parallel.py",
            ["--calls", "2", "--sleep", "0.05", "--repeat", "1"],
            "tool phase",
        ),
    ],
)
def test_benchmark_runs_at_its_smoke_size(script: str, args: list[str], reported: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert reported in done.stdout, done.stdout[-3000:]
