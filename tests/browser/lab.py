"""Driving JupyterLab like a user: open a notebook, Run All from the menu, read cell outputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import nbformat
from playwright.sync_api import Locator, Page, expect

KERNEL_START_TIMEOUT = 60_000  # ms; a cold kernel on a busy machine
RUN_TIMEOUT = 30_000  # ms


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path

    def open(self, page: Page, name: str, cells: list[str]) -> Notebook:
        """Write a notebook of code ``cells`` and open it in ``page`` with a ready kernel."""
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        # Naming the kernel spares the "Select Kernel" dialog.
        notebook.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nbformat.write(notebook, self.root / f"{name}.ipynb")
        # A workspace of its own per notebook: the default one would reopen earlier tests' tabs.
        page.goto(
            f"{self.url}/lab/workspaces/{quote(name)}/tree/{quote(name)}.ipynb?token={self.token}"
        )
        nb = Notebook(page)
        expect(nb.cells).to_have_count(len(cells), timeout=KERNEL_START_TIMEOUT)
        expect(page.locator(".jp-NotebookPanel-toolbar")).to_contain_text(
            "Python 3 (ipykernel)", timeout=KERNEL_START_TIMEOUT
        )
        expect(page.locator("#jp-main-statusbar")).to_contain_text(
            re.compile(r"Python 3 \(ipykernel\) \| Idle"), timeout=KERNEL_START_TIMEOUT
        )
        return nb

    def open_panel(self, page: Page, name: str, chat: str = "") -> tuple[Notebook, Locator]:
        """A notebook that loads the extension and shows a chat panel (on conversation ``chat``,
        else ``main``), run; the notebook and the panel."""
        nb = self.open(page, name, ["%load_ext clarifai_magic", f"%clarifai chat {chat}".strip()])
        nb.run_all()
        nb.wait_done(1)
        panel = nb.output(1).locator(".clarifai-chat")
        expect(panel).to_contain_text(f"conversation {chat or 'main'}")
        return nb, panel


class Notebook:
    """The notebook open in the page's main area."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    def output(self, index: int) -> Locator:
        """The output area of cell ``index``."""
        return self.cells.nth(index).locator(".jp-OutputArea")

    def wait_done(self, index: int, timeout: float = RUN_TIMEOUT) -> None:
        """Wait until cell ``index`` has run: its prompt shows an execution count."""
        prompt = self.cells.nth(index).locator(".jp-InputPrompt")
        expect(prompt).to_have_text(re.compile(r"\[\d+\]:"), timeout=timeout)

    def prompt(self, index: int) -> str:
        return self.cells.nth(index).locator(".jp-InputPrompt").inner_text()
