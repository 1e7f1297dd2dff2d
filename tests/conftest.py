"""Shared fixtures: the offline server, a clean environment, an in-process IPython shell."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarifai_magic.testing import OfflineServer

TEST_PAT = "test-pat-7f3a9c1e5b"


@pytest.fixture(scope="session")
def _server() -> Iterator[OfflineServer]:
    with OfflineServer() as server:
        yield server


@pytest.fixture
def server(_server: OfflineServer) -> Iterator[OfflineServer]:
    _server.clear()
    _server.require_token = None
    yield _server
    _server.clear()


@pytest.fixture
def env(server: OfflineServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the package at the offline server with a test PAT and a private data directory."""
    for name in ("CLARIFAI_MODEL", "JPY_SESSION_NAME", "CLARIFAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLARIFAI_PAT", TEST_PAT)
    monkeypatch.setenv("CLARIFAI_API_BASE", server.api_base)
    monkeypatch.setenv("CLARIFAI_MAGIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no real ~/.config/clarifai/config
    return tmp_path


@pytest.fixture
def kernel_env(server: OfflineServer, tmp_path: Path) -> dict[str, str]:
    """Environment for a real kernel: the offline server, a test PAT, private dirs, a notebook."""
    return {
        "CLARIFAI_PAT": TEST_PAT,
        "CLARIFAI_API_BASE": server.api_base,
        "CLARIFAI_MAGIC_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path),
        "JPY_SESSION_NAME": str(tmp_path / "analysis.ipynb"),
    }


@pytest.fixture
def kernel(kernel_env: dict[str, str]) -> Iterator[Any]:
    """A real ipykernel (jupyter_client) with :func:`kernel_env`."""
    from .kernel_util import Kernel

    k = Kernel(kernel_env)
    try:
        yield k
    finally:
        k.shutdown()


@pytest.fixture
def shell(env: Path) -> Iterator[Any]:
    """A real in-process IPython shell with the extension loaded, drawing cell displays."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "clarifai_magic")
    ip.run_line_magic("config", "ClarifaiMagics.display_mode = 'cell'")
    yield ip
    ip.run_line_magic("unload_ext", "clarifai_magic")
    ip.run_line_magic("config", "ClarifaiMagics.display_mode = 'auto'")
    ip.run_line_magic("config", "ClarifaiMagics.default_model = ''")
    ip.run_line_magic("config", "ClarifaiMagics.aliases = {}")
    ip.user_ns.pop("__session__", None)
