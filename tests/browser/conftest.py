"""Fixtures for the browser tests: a JupyterLab server on the offline API, headless Chromium.

Chromium is the system one (Debian's ``chromium`` package): Playwright's own browser downloads
are not used. ``CHROMIUM_PATH`` points at another Chromium-family binary (say google-chrome).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from clarifai_magic.testing import OfflineServer

from ..conftest import TEST_PAT
from .lab import Lab

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAB_START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


@pytest.fixture(scope="package")  # torn down before the other tests: Playwright holds a loop
def lab(_server: OfflineServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab with kernels pointed at the offline server; settings kept in a temp dir."""
    base = tmp_path_factory.mktemp("lab")
    root, config = base / "notebooks", base / "config"
    root.mkdir()
    # Stops the "receive Jupyter news?" toast, which would cover outputs; users set it the same way.
    _write_json(
        config
        / "lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLARIFAI_MODEL", "CLARIFAI_API_KEY", "JPY_SESSION_NAME")
        and not k.startswith("JUPYTER")
    }
    env.update(
        CLARIFAI_PAT=TEST_PAT,
        CLARIFAI_API_BASE=_server.api_base,
        CLARIFAI_MAGIC_HOME=str(base / "magic"),
        HOME=str(base),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        # The kernel spec says "python": make it this interpreter, whatever PATH holds.
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    port, token = _free_port(), secrets.token_hex(16)
    log_path = base / "jupyterlab.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.token={token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.open_browser=False",
                "--ServerApp.allow_root=True",  # CI containers often run as root
            ],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        _wait_until_ready(lab, proc, log_path)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_ready(lab: Lab, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"JupyterLab did not start in {LAB_START_TIMEOUT:.0f} s:\n{log_path.read_text()}")


@pytest.fixture(scope="package")  # torn down before the other tests: Playwright holds a loop
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"No Chromium at {CHROMIUM}: the browser tests need it. Install it with "
            "`apt-get install -y chromium` (Debian) or set CHROMIUM_PATH to a Chromium or Chrome "
            "binary. Playwright's own browser download is not used.",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failed browser test, save what the page showed and say where."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None:
        shot = item.funcargs["tmp_path"] / "failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            report.sections.append(("browser", f"Screenshot of the page: {shot}"))
        except Exception as exc:  # a crashed page must not hide the test's own failure
            report.sections.append(("browser", f"No screenshot: {exc}"))
    return report


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    """A page in a fresh browser context; a failed test's screenshot goes to ``tmp_path``."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()
