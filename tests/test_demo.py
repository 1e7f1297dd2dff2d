"""`clarifai-magic demo`, the main job, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clarifai_magic.offline import OfflineServer

from .conftest import TEST_PAT


def run_demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLARIFAI_")}
    clean.update(HOME=str(tmp_path), CLARIFAI_MAGIC_HOME=str(tmp_path / "store"), **env)
    return subprocess.run(
        [sys.executable, "-m", "clarifai_magic.demo", "demo"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )


def test_demo_without_a_pat_runs_offline_and_says_so(tmp_path: Path) -> None:
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SCRIPTED" in out and "offline server" in out
    assert "**units** and **revenue**" in out  # the streamed answer
    assert 'unit_price(region="north") → 12.5' in out  # the tool call
    assert "The average unit price in the **north** region is **12.5**." in out
    assert "| main | 6 |" in out  # the conversation was kept
    assert "Traceback" not in out + result.stderr


def test_demo_with_a_pat_talks_to_the_api(tmp_path: Path, server: OfflineServer) -> None:
    result = run_demo(tmp_path, CLARIFAI_PAT=TEST_PAT, CLARIFAI_API_BASE=server.api_base)
    assert result.returncode == 0, result.stderr
    assert "SCRIPTED" not in result.stdout
    assert len(server.chat_requests) >= 2
    assert TEST_PAT not in result.stdout + result.stderr
