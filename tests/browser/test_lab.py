"""%%clarifai in JupyterLab, in a real browser: rendered answers and confirm buttons."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Page, expect

from clarifai_magic.testing import OfflineServer, text, tool_calls

from .lab import Lab

DELETE_ROWS = '''from clarifai_magic import tool

@tool(confirm=True)
def delete_rows(table: str) -> str:
    """Delete all rows of a table."""
    return f"deleted {table}"'''


def test_answer_streams_into_the_cell_as_rendered_markdown(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    server.enqueue(
        text("## Summary\n\nThe **mean** is 3.5.", chunk_size=2, delay=0.02, reasoning="Compute.")
    )
    nb = lab.open(page, "summary", ["%load_ext clarifai_magic", "%%clarifai\nSummarise."])
    nb.run_all()
    nb.wait_done(1)

    out = nb.output(1)
    expect(out.locator("h2", has_text="Summary")).to_be_visible()
    expect(out.locator("strong")).to_have_text("mean")
    thinking = out.locator("details", has=page.locator("summary", has_text="Thinking"))
    expect(thinking).to_have_count(1)
    assert thinking.evaluate("d => d.open") is False, "the reasoning starts folded"
    expect(thinking.get_by_text("Compute.")).to_be_hidden()
    thinking.locator("summary").click()
    reasoning = thinking.locator("blockquote", has_text="Compute.")
    expect(reasoning).to_be_visible()  # indented under its summary, in grey, unlike the answer
    assert reasoning.evaluate("e => getComputedStyle(e).color") == "rgb(136, 136, 136)"
    answer_color = out.locator("strong", has_text="mean").evaluate("e => getComputedStyle(e).color")
    assert answer_color != "rgb(136, 136, 136)"
    expect(out.locator("sub")).to_contain_text("gpt-4o")
    # The stream updated one display in place rather than appending outputs.
    expect(out.locator(".jp-OutputArea-output")).to_have_count(1)
    assert server.chat_requests[0].json["stream"] is True
    if shot := os.environ.get("CLARIFAI_LAB_SCREENSHOT"):
        page.screenshot(path=shot)


def test_a_long_answer_streams_block_by_block_and_ends_as_one_markdown_output(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    parts = [
        f"## Part {n}\n\nParagraph {n} of the answer, with **bold** words in it." for n in range(12)
    ]
    server.enqueue(text("\n\n".join(parts), chunk_size=4, delay=0.02))  # about 4 s
    nb = lab.open(page, "long", ["%load_ext clarifai_magic", "%%clarifai\nExplain in parts."])
    nb.run_all()

    out = nb.output(1)
    expect(out.locator("h2", has_text="Part 1")).to_be_visible(timeout=15_000)
    assert nb.prompt(1) == "[*]:", "the first parts show while the answer still streams"
    nb.wait_done(1)
    expect(out.locator("h2")).to_have_count(12)
    expect(out.locator("strong")).to_have_count(12)
    expect(out.locator("sub")).to_contain_text("gpt-4o")
    # The blocks shown while it streamed are gone: one rendered Markdown output holds it all.
    expect(out.locator(".jp-RenderedMarkdown", has_text="Part")).to_have_count(1)
    expect(out.locator(".jp-RenderedMarkdown", has_text="Part")).to_contain_text("Part 11")


@pytest.mark.parametrize(
    ("button", "verdict", "tool_result"),
    [
        ("Run", "Approved.", "deleted sales"),
        ("Skip", "Skipped.", "The user declined to run delete_rows."),
    ],
)
def test_confirm_tool_waits_for_a_click_in_the_notebook(
    lab: Lab, page: Page, server: OfflineServer, button: str, verdict: str, tool_result: str
) -> None:
    server.enqueue(
        tool_calls([("call_1", "delete_rows", '{"table": "sales"}')]),
        text("Done."),
    )
    nb = lab.open(
        page,
        f"confirm_{button.lower()}",
        [
            DELETE_ROWS,
            "%load_ext clarifai_magic",
            "%%clarifai --tools delete_rows\nClean the sales table.",
        ],
    )
    nb.run_all()

    out = nb.output(2)
    expect(out).to_contain_text('Run delete_rows(table="sales")?')
    choice = out.locator("button", has_text=button)  # the name has an icon glyph before it
    expect(choice).to_be_enabled()
    assert nb.prompt(2) == "[*]:", "the cell waits for the answer"
    choice.click()

    expect(out).to_contain_text("Done.", timeout=15_000)
    nb.wait_done(2)
    expect(out).to_contain_text(verdict)
    expect(out.get_by_role("button")).to_have_count(0)  # the buttons go once answered
    requests = server.chat_requests
    assert len(requests) == 2
    tool_messages = [m for m in requests[1].json["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("call_1", tool_result)]


def test_chat_panel_streams_an_answer_and_stops_on_request(
    lab: Lab, page: Page, server: OfflineServer
) -> None:
    nb, panel = lab.open_panel(page, "panel")

    server.enqueue(text("## Panel\n\nThe **answer** streamed.", chunk_size=2, delay=0.02))
    panel.locator("textarea").fill("What is this?")
    panel.locator("button", has_text="Send").click()
    answer = panel.locator(".clarifai-chat-assistant").last
    expect(answer.locator("h2", has_text="Panel")).to_be_visible(timeout=15_000)
    expect(answer.locator("strong", has_text="answer")).to_be_visible()
    expect(answer).to_contain_text("gpt-4o", timeout=15_000)  # the footer: the turn ended
    assert nb.prompt(1) != "[*]:", "the notebook stays free while the panel works"
    if shot := os.environ.get("CLARIFAI_PANEL_SCREENSHOT"):
        page.screenshot(path=shot)

    server.enqueue(text("tick " * 400, chunk_size=5, delay=0.05))
    panel.locator("textarea").fill("Count slowly")
    panel.locator("button", has_text="Send").click()
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text("tick", timeout=15_000)
    panel.locator("button", has_text="Stop").click()
    expect(panel.locator(".clarifai-chat-assistant").last).to_contain_text(
        "Interrupted", timeout=5_000
    )
    assert [m["content"] for m in server.chat_requests[-1].json["messages"]] == [
        "What is this?",
        "## Panel\n\nThe **answer** streamed.",
        "Count slowly",
    ]
