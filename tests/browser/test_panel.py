"""The chat panel in JupyterLab, in a real browser, as a user drives it: type a question, press
Enter, watch the answer stream, Stop a slow one, pick another model, start a new conversation."""

from __future__ import annotations

import os
import re

from playwright.sync_api import Page, expect

from clarifai_magic.testing import OfflineServer, text

from .lab import Lab, Notebook
from .test_code_actions import save_and_read


def test_the_panel_works_like_a_chat_website(lab: Lab, page: Page, server: OfflineServer) -> None:
    nb, panel = lab.open_panel(page, "chat-panel")
    prompt = panel.locator("textarea")

    # Enter sends; Shift+Enter adds a line. The answer is on screen while it still streams.
    words = " ".join(f"word{n}" for n in range(300))
    server.enqueue(
        text(f"## Streaming\n\n{words}\n\n```python\nprint('hi')\n```", chunk_size=8, delay=0.02)
    )
    prompt.click()
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Enter")
    answer = panel.locator(".clarifai-chat-assistant").last
    expect(answer.locator("h2", has_text="Streaming")).to_be_visible(timeout=15_000)
    expect(panel.locator("button", has_text="Stop")).to_be_enabled()  # still streaming
    if shot := os.environ.get("CLARIFAI_PANEL_STREAM_SCREENSHOT"):  # for the README
        panel.screenshot(path=shot)
    expect(answer).to_contain_text("gpt-4o", timeout=20_000)  # the footer: the turn ended
    expect(answer).to_contain_text("word299")
    expect(prompt).to_have_value("")
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "First line\nsecond line"
    # The code block is coloured as JupyterLab colours Python; its actions copy the plain text.
    expect(answer.locator("pre code span.hljs-string", has_text="'hi'")).to_have_count(1)
    # The code block has its actions; Copy puts the code on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    actions = answer.locator(".clarifai-code-actions")
    expect(actions).to_have_count(1)
    actions.locator("button", has_text="Copy").click()
    expect(actions.locator("button", has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')"
    # "Insert" puts it in a new cell below the panel's, with JupyterLab's app object not exposed
    # (tests/browser/test_code_actions.py checks the cell and the saved file closely).
    actions.locator("button", has_text="Insert into a new cell").click()
    expect(actions.locator("button", has_text="Inserted below")).to_be_visible()
    expect(nb.cells).to_have_count(3)
    expect(nb.cells.nth(2).locator(".cm-content")).to_have_text("print('hi')")

    # Stop on a slow answer keeps what came.
    server.enqueue(text("tick " * 400, chunk_size=5, delay=0.05))
    prompt.fill("Count slowly")
    prompt.press("Enter")
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text("tick", timeout=15_000)
    panel.locator("button", has_text="Stop").click()
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text(
        "Interrupted", timeout=5_000
    )

    # Another model, picked from the list.
    panel.locator(".widget-dropdown", has_text="Model").locator("select").select_option(
        label="claude-sonnet-4"
    )
    expect(panel.locator(".widget-html").first).to_contain_text("claude-sonnet-4")
    server.enqueue(text("From Claude."))
    prompt.fill("Who are you?")
    prompt.press("Enter")
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text("From Claude.")
    assert server.chat_requests[-1].json["model"].endswith("models/claude-sonnet-4")

    # A new conversation starts empty and sends no history.
    panel.locator("button", has_text="New conversation").click()
    expect(panel).to_contain_text("conversation chat-1")
    expect(panel.locator(".clarifai-chat-assistant")).to_have_count(0)
    server.enqueue(text("A fresh start."))
    prompt.fill("Hello again")
    prompt.press("Enter")
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text("A fresh start.")
    assert [m["role"] for m in server.chat_requests[-1].json["messages"]] == ["user"]
    expect(panel.locator(".widget-dropdown", has_text="Chat").locator("select")).to_have_value(
        re.compile("chat-1")
    )


def test_a_reloaded_page_shows_the_panel_conversation_again(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    """The log keeps no widget state: a view made after a reload asks the kernel for a replay."""
    _nb, panel = lab.open_panel(page, "panel-reload", chat="reloaded")
    server.enqueue(text("Still **here** after a reload.\n\n```python\nx = 1\n```", chunk_size=4))
    panel.locator("textarea").fill("Remember me")
    panel.locator("textarea").press("Enter")
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text("gpt-4o")
    save_and_read(
        page,
        lab.root / "panel-reload.ipynb",
        lambda saved: any(o.get("data") for o in saved.cells[1].outputs),
    )
    page.reload()
    panel = Notebook(page).output(1).locator(".clarifai-chat")
    expect(panel.locator(".clarifai-chat-user")).to_contain_text("Remember me", timeout=30_000)
    answer = panel.locator(".clarifai-chat-assistant")
    expect(answer).to_have_count(1)
    expect(answer.locator("strong", has_text="here")).to_be_visible()
    expect(answer.locator(".clarifai-code-actions")).to_have_count(1)


def test_links_in_panel_answers_go_only_to_the_web(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    """The panel renders Markdown itself, so its links are checked there: a javascript: or data:
    link from a model (or a prompt injection) loses its target; web links open in a new tab."""
    flag = "(window.__pwned=window.__pwned||[]).push('link')"
    server.enqueue(
        text(
            f"[docs](https://example.com/docs) [run](javascript:{flag}) "
            f"[RUN](JaVaScRiPt:{flag}) [page](data:text/html,hi) and https://example.org/ too"
        )
    )
    _nb, panel = lab.open_panel(page, "panel-links", chat="links")
    panel.locator("textarea").fill("Links?")
    panel.locator("textarea").press("Enter")
    answer = panel.locator(".clarifai-chat-assistant").last
    expect(answer).to_contain_text("gpt-4o")
    links = answer.locator("a").evaluate_all(
        "links => links.map(a => [a.textContent, a.getAttribute('href'), a.target, a.rel])"
    )
    assert links == [
        ["docs", "https://example.com/docs", "_blank", "noopener noreferrer"],
        ["run", None, "", ""],
        ["RUN", None, "", ""],
        ["page", None, "", ""],
        ["https://example.org/", "https://example.org/", "_blank", "noopener noreferrer"],
    ]
    answer.locator("a", has_text="run").first.click()
    assert page.evaluate("window.__pwned === undefined")
