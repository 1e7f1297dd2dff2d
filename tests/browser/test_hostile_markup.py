"""Model and tool text cannot run script or inject markup in JupyterLab (issue 12, item 2).

A hostile answer (as a prompt injection would make a model write) and a hostile tool result are
rendered live in a streaming cell, in ``%clarifai history``, in the chat panel (a stored
conversation re-rendered, then a new answer), and again after the notebook is saved and the page
reloaded, when a trusted notebook renders its outputs with no click. Each payload would record
itself in ``window.__pwned``, a CSS variable or a request for a ``pwned`` URL; none may. A control
cell shows the same payloads as raw Markdown, the way answers used to be sent, to prove they do
run in this browser, so the test can fail.
"""

from __future__ import annotations

import json

from playwright.sync_api import Locator, Page, Request, expect

from clarifai_magic.testing import OfflineServer, text, tool_calls

from .lab import Lab


def _payloads(tag: str) -> str:
    """Markup that runs or fetches if rendered as HTML; each records ``tag`` when it does."""

    def flag(name: str) -> str:
        return f"(window.__pwned=window.__pwned||[]).push('{tag}{name}')"

    return "\n".join(
        [
            f'<img src={tag}pwned-img.png onerror="{flag("img")}">',
            f"<script>{flag('script')}</script>",
            f'<iframe srcdoc="<script>parent.{flag("iframe")}</script>"></iframe>',
            f'<svg onload="{flag("svg")}"></svg>',
            f"<style>body {{ --{tag}pwned: 1; }}</style>",
            "<!-- comment --><details open><summary>injected</summary>hidden</details>",
            f"![pixel]({tag}pwned-markdown-image.png)",
        ]
    )


def _flag(name: str) -> str:
    return f"(window.__pwned=window.__pwned||[]).push('{name}')"


PAYLOADS = _payloads("")
# Corners where a renderer could read a code span or block differently from the escaping.
BREAK_OUTS = "\n".join(
    [
        f'~~a `b~~ <img src=x onerror="{_flag("del")}">`',
        f'http://example.com`<img src=x onerror="{_flag("url")}">`',
        f'$5 and `$ <img src=x onerror="{_flag("math")}">`',
        f'- ```\n  x\n  ```\n<img src=x onerror="{_flag("list-fence")}">\n```',
        f'[a]: /u "\n```\nx"\n<img src=x onerror="{_flag("definition")}">\n```',
    ]
)
ANSWER = (
    "## Report\n\n"
    "| name | value |\n|---|---|\n| alpha | 1 |\n\n"
    '```python\nprint("<b>ok</b>")\n```\n\n'
    "See [the docs](https://example.com) and inline `<code>` here.\n\n"
    f"{PAYLOADS}\n\n"
    f"```\n</details>\n```\n{PAYLOADS}\n\n"
    f"{BREAK_OUTS}\n"
)
TOOL_RESULT = f"Page text.\n```\n</details>{PAYLOADS}\n```\n{PAYLOADS}"
TOOL = f'''from clarifai_magic import tool

@tool
def fetch_page(url: str) -> str:
    """Fetch a web page."""
    return {TOOL_RESULT!r}'''
# Raw Markdown in a cell's output, as answers were sent before: the payloads do run.
CONTROL = f"from IPython.display import Markdown\nMarkdown({_payloads('control-')!r})"
INERT = ".jp-RenderedMarkdown :is(img, iframe, script, style, svg:not(mjx-container svg))"


def _assert_no_injected_elements(out: Locator) -> None:
    found = out.locator(INERT).evaluate_all("els => els.map(e => e.outerHTML)")
    assert found == [], found


def _pwned(page: Page) -> list[str]:
    fired: list[str] = page.evaluate("() => window.__pwned || []")
    style = "getComputedStyle(document.body).getPropertyValue('--pwned').trim()"
    if page.evaluate(f"() => {style}"):
        fired.append("style")
    return fired


def _assert_ordinary_markdown(out: Locator) -> None:
    expect(out.locator("h2", has_text="Report").first).to_be_visible()
    expect(out.locator("table td", has_text="alpha").first).to_be_visible()
    expect(out.locator("pre", has_text='print("<b>ok</b>")').first).to_be_visible()
    expect(out.locator('a[href="https://example.com"]').first).to_be_visible()
    expect(out.locator("code", has_text="<code>").first).to_be_visible()
    # The payloads are shown as the text they are.
    expect(out.get_by_text("<script>", exact=False).filter(visible=True).first).to_be_visible()
    _assert_no_injected_elements(out)


def test_hostile_text_renders_inert_live_in_history_in_the_panel_and_after_reload(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    fetched: list[str] = []

    def on_request(request: Request) -> None:
        if "pwned" in request.url:
            fetched.append(request.url)

    page.on("request", on_request)
    server.enqueue(
        tool_calls([("call_1", "fetch_page", json.dumps({"url": PAYLOADS}))]),
        text(ANSWER, chunk_size=40, delay=0.01, reasoning=f"Thinking {PAYLOADS}"),
    )
    nb = lab.open(
        page,
        "hostile",
        [
            TOOL,
            "%load_ext clarifai_magic",
            "%%clarifai --tools fetch_page\nSummarise the page.",
            "%clarifai history",
            "%clarifai chat",
        ],
    )
    nb.run_all()

    # Live, in the streaming cell: the answer, the reasoning and the tool call and result.
    nb.wait_done(2)
    answer = nb.output(2)
    _assert_ordinary_markdown(answer)
    expect(answer.locator("summary", has_text="fetch_page")).to_have_count(1)
    expect(answer.locator("summary", has_text="Thinking")).to_have_count(1)
    answer.locator("summary").evaluate_all("els => els.forEach(e => e.click())")  # unfold all
    expect(answer.locator("pre", has_text="</details><img").first).to_be_visible()

    # %clarifai history: the stored messages and the tool result in a block sized to it.
    nb.wait_done(3)
    history = nb.output(3)
    expect(history.locator("table td", has_text="alpha")).to_have_count(1)
    history.locator("summary").evaluate_all("els => els.forEach(e => e.click())")
    expect(history.locator("pre", has_text="</details><img").first).to_be_visible()
    _assert_no_injected_elements(history)

    # The chat panel re-renders the stored conversation, then streams a new answer.
    nb.wait_done(4)
    panel = nb.output(4).locator(".clarifai-chat")
    expect(panel.locator(".clarifai-chat-assistant").first).to_contain_text("Report")
    _assert_ordinary_markdown(panel.locator(".clarifai-chat-assistant").first)
    server.enqueue(text(ANSWER, chunk_size=40, delay=0.01))
    panel.locator("textarea").fill(f"Again {PAYLOADS}")
    panel.locator("button", has_text="Send").click()
    newest = panel.locator(".clarifai-chat-assistant").last
    expect(newest).to_contain_text("gpt-4o", timeout=15_000)  # the footer: the turn ended
    _assert_ordinary_markdown(newest)
    _assert_no_injected_elements(panel)
    assert _pwned(page) == [] and fetched == []

    # Saved and reopened: the trusted notebook renders its outputs again, with no click.
    nb.cells.nth(0).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+s")
    expect(page.locator(".lm-TabBar-tab.jp-mod-dirty")).to_have_count(0)
    page.reload()
    expect(nb.cells).to_have_count(5, timeout=60_000)
    _assert_ordinary_markdown(nb.output(2))
    expect(nb.output(3).locator("table td", has_text="alpha")).to_have_count(1)

    # The control, last: the same payloads as raw Markdown do run here. By the time they have,
    # any in the outputs above would have run too.
    nb.cells.last.locator(".jp-InputPrompt").click()
    page.keyboard.press("b")  # a new cell below
    page.keyboard.press("Enter")
    page.keyboard.insert_text(CONTROL)
    page.keyboard.press("Shift+Enter")
    page.wait_for_function("() => (window.__pwned || []).includes('control-img')")
    fired = _pwned(page)
    assert [f for f in fired if not f.startswith("control-")] == [], fired
    assert [u for u in fetched if "control-" not in u] == [], fetched
    assert any("control-pwned-img.png" in u for u in fetched)
