"""Code-block actions in JupyterLab, in a real browser, without JupyterLab's app object exposed:
Copy on the code blocks of %%clarifai answers (page-only buttons, nothing in the saved file), and
the chat panel's "Insert into a new cell"."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import nbformat
from playwright.sync_api import Page, expect

from clarifai_magic.testing import OfflineServer, text

from .lab import Lab

# Indentation with spaces and a tab, markup characters, both quotes, a backslash, a blank line.
CODE = (
    "def tag(a, b):\n"
    '    """<b>&amp; \'quoted\'</b>"""\n'
    "\tif a < b && b > 0:\n"
    '        return f"<i>{a}</i> & {b!r}\\n"\n'
    "\n"
    "print(tag(1, 2))  # <script>alert('x')</script>"
)
ACTIVE = re.compile(r"\bjp-mod-active\b")
ANSWER = f"Here it is:\n\n```python\n{CODE}\n```\n\nAnd a one-liner:\n\n```\nls -la\n```\n"


def save_and_read(page: Page, path: Path, ready: Any) -> nbformat.NotebookNode:
    """File > Save Notebook, as a user does; the file as saved once ``ready(notebook)`` holds."""
    page.locator(".lm-MenuBar-itemLabel", has_text="File").click()
    page.locator(".lm-Menu-itemLabel", has_text="Save Notebook").first.click()
    deadline = time.monotonic() + 15
    while True:
        notebook = nbformat.read(path, as_version=4)
        if ready(notebook) or time.monotonic() > deadline:
            return notebook
        time.sleep(0.2)


def test_copy_on_the_code_blocks_of_an_answer_in_the_page_only(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    server.enqueue(text(ANSWER, chunk_size=16, delay=0.01))
    nb = lab.open(page, "copy-code", ["%load_ext clarifai_magic", "%%clarifai\nWrite tag()."])
    nb.run_all()
    nb.wait_done(1)
    out = nb.output(1)
    expect(out.locator("sub.clarifai-footer")).to_contain_text("gpt-4o")
    blocks = out.locator(".clarifai-code-block")
    expect(blocks).to_have_count(2)
    first = blocks.first
    button = first.locator("button.clarifai-block-copy")
    expect(button).to_have_text("Copy")
    # Small and out of the way: it shows on hover, at the block's top right.
    assert button.evaluate("b => getComputedStyle(b).opacity") == "0"
    first.locator("pre").hover()
    expect(button).to_have_css("opacity", "1")
    box, pre = button.bounding_box(), first.locator("pre").bounding_box()
    assert box and pre and box["x"] + box["width"] > pre["x"] + pre["width"] - 40
    assert box["y"] < pre["y"] + 20
    button.click()
    expect(first.locator("button", has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    blocks.nth(1).locator("pre").hover()
    blocks.nth(1).locator("button").click()
    expect(blocks.nth(1).locator("button", has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "ls -la"
    # The markup in the code stayed text: no element came out of it.
    expect(out.locator("pre script, pre b, pre i")).to_have_count(0)

    # Saved: the answer is one Markdown output; no button, no script, nothing else with data.
    path = lab.root / "copy-code.ipynb"
    saved = save_and_read(page, path, lambda n: bool(n.cells[1].outputs))
    raw = path.read_text()
    assert "clarifai-block-copy" not in raw and "clarifai-code-block" not in raw
    assert "__clarifaiPageScript" not in raw and "application/javascript" not in raw
    with_data = [o for o in saved.cells[1].outputs if o.get("data")]
    assert len(with_data) == 1, json.dumps(saved.cells[1].outputs)[:2000]
    assert CODE in with_data[0]["data"]["text/markdown"]

    # Reloaded, the page has no script until an answer brings it again, for every answer shown.
    page.reload()
    expect(nb.cells).to_have_count(2, timeout=60_000)
    expect(out.locator("sub.clarifai-footer")).to_be_visible()
    expect(out.locator(".clarifai-code-block")).to_have_count(0)
    server.enqueue(text("Again:\n\n```\necho again\n```"))
    nb.run_all()
    expect(out).to_contain_text("Again:", timeout=30_000)
    expect(out.locator(".clarifai-code-block")).to_have_count(1)
    out.locator("pre").hover()
    out.locator("button.clarifai-block-copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "echo again"


def test_insert_into_a_new_cell_puts_the_code_right_below_the_panel(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    cells = ["%load_ext clarifai_magic", "%clarifai chat", "x = 1  # after the panel"]
    nb = lab.open(page, "insert-code", cells)
    nb.run_all()
    nb.wait_done(2)
    panel = nb.output(1).locator(".clarifai-chat")
    server.enqueue(text(ANSWER))
    panel.locator("textarea").fill("Write tag().")
    panel.locator("textarea").press("Enter")
    answer = panel.locator(".clarifai-chat-assistant").last
    expect(answer).to_contain_text("gpt-4o", timeout=20_000)
    actions = answer.locator(".clarifai-code-actions")
    expect(actions).to_have_count(2)
    nb.cells.nth(2).locator(".jp-InputPrompt").click()  # another cell is the active one
    expect(nb.cells.nth(2)).to_have_class(ACTIVE)

    assert page.evaluate("typeof window.jupyterapp") == "undefined", "the stock page, no app"
    page.evaluate("navigator.clipboard.writeText('')")
    actions.first.locator("button", has_text="Insert into a new cell").click()
    expect(actions.first.locator("button", has_text="Inserted below")).to_be_visible()
    expect(nb.cells).to_have_count(4)
    new = nb.cells.nth(2)
    expect(new.locator(".cm-content")).to_contain_text("print(tag(1, 2))")
    assert page.evaluate("navigator.clipboard.readText()") == "", "inserted, not copied"

    path = lab.root / "insert-code.ipynb"
    saved = save_and_read(page, path, lambda n: len(n.cells) == 4)
    assert [c.cell_type for c in saved.cells] == ["code"] * 4
    assert [c.source for c in saved.cells] == [*cells[:2], CODE, cells[2]]
    assert saved.cells[2].outputs == [] and saved.cells[2].execution_count is None

    # A toolbar without "insert cell below" (customised): the code is copied, to paste by hand.
    page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:insert-cell-below"]').evaluate(
        "b => b.remove()"
    )
    actions.nth(1).locator("button", has_text="Insert into a new cell").click()
    expect(actions.nth(1).locator("button", has_text="Copied: paste it in a cell")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "ls -la"
    expect(nb.cells).to_have_count(4)


def test_the_panel_log_copies_by_itself_where_no_page_script_runs(lab: Lab, page: Page) -> None:
    """Where the page script doesn't run (VS Code), the log's own Copy works, and Insert copies
    and says so. Here the log is shown without the extension: no page script reaches the page."""
    setup = (
        "from clarifai_magic.chat_log import ChatLog\n"
        "log = ChatLog()\n"
        "n = log.add('assistant', '```python\\nx = 1  # <b>kept</b>\\n```')\n"
        "log.code(n, [('python', 'x = 1  # <b>kept</b>')])\n"
        "log"
    )
    nb = lab.open(page, "log-alone", [setup])
    nb.run_all()
    nb.wait_done(0)
    assert page.evaluate("window.__clarifaiPageScript === undefined")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    actions = nb.output(0).locator(".clarifai-code-actions")
    expect(actions).to_have_count(1)
    actions.locator("button", has_text="Copy").click()
    expect(actions.locator("button", has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "x = 1  # <b>kept</b>"
    page.evaluate("navigator.clipboard.writeText('')")
    actions.locator("button", has_text="Insert into a new cell").click()
    expect(actions.locator("button", has_text="Copied: paste it in a cell")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "x = 1  # <b>kept</b>"
    expect(nb.cells).to_have_count(1)
