"""The README's pictures, taken by tests so they cannot drift from what the product shows.

Each test drives JupyterLab as a user would, asserts what the picture must show, and only then
takes it, clipped to the element. The PNGs go to pytest's tmp dir; with
``CLARIFAI_MAGIC_SCREENSHOTS=DIR`` they go to ``DIR`` (``docs/images`` for the committed ones).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from clarifai_magic.testing import OfflineServer, Script, chunk, raw, split_text, text, tool_calls

from .lab import Lab

# A modest page at device scale 1 keeps the PNGs small and the text readable in a README.
VIEWPORT = {"width": 1000, "height": 900}

WEATHER_TOOL = '''from typing import Literal

from clarifai_magic import tool


@tool
def get_weather(location: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Get the current temperature for a given location.

    Args:
        location: City and country, e.g. "Bogotá, Colombia".
        unit: The temperature unit.
    """
    # Made-up readings, the location echoed back first as weather APIs do (the cell's one-line
    # preview leaves the echo out).
    celsius = {"paris": 18.0, "bogotá": 14.5}[location.split(",")[0].strip().lower()]
    value = celsius if unit == "celsius" else celsius * 9 / 5 + 32
    return {"location": location, "temperature": value, "unit": unit}'''
WEATHER_QUESTION = "%%clarifai --tools get_weather\nHow warm is it in Paris and in Bogotá?"
WEATHER_CALLS = [
    ("call_1", "get_weather", '{"location": "Paris, France"}'),
    ("call_2", "get_weather", '{"location": "Bogotá, Colombia"}'),
]

PANEL_QUESTION = "How do I read a CSV and plot one column?"
# The answer's start comes quickly: a heading, a finished code block, a list.
PANEL_START = """## Plotting one column

Read the file with pandas, then call `plot` on the column:

```python
import pandas as pd

df = pd.read_csv("sales.csv")
df["revenue"].plot(title="Revenue")
```

Two things to check first:

1. The column holds numbers: `df.dtypes` should say `float64` or `int64`.
2. The dates are parsed (`parse_dates=["date"]`), so the x axis is in order.

"""
# The rest trickles in for several seconds, so the picture is taken while it streams.
PANEL_REST = """Outside a notebook the plot needs one more line to open a window, \
`plt.show()`. For a bar chart of the monthly totals instead, resample first: \
`df.resample("M", on="date")["revenue"].sum().plot.bar()`. That is all it takes."""
PANEL_LAST_WORDS = "That is all it takes."

WEATHER_ANSWER = """Paris is at **18 °C** and Bogotá at **14.5 °C**: light-jacket weather in both.

In Fahrenheit:

```python
[c * 9 / 5 + 32 for c in (18.0, 14.5)]  # [64.4, 58.1]
```"""


def _shot_path(tmp_path: Path, name: str) -> Path:
    """Where a picture goes: ``$CLARIFAI_MAGIC_SCREENSHOTS/name`` when set, else the tmp dir."""
    folder = os.environ.get("CLARIFAI_MAGIC_SCREENSHOTS")
    target = Path(folder) if folder else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return target / name


def _slow_answer(start: str, rest: str) -> Script:
    """A streamed answer: ``start`` in under a second, then ``rest`` at 40 characters a second
    (about 6 s), as a slow model writes."""
    events: list[dict | str] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in split_text(start, 24)]
    events += [chunk({"content": piece}) for piece in split_text(rest, 2)]
    events.append(chunk({}, "stop"))
    return raw(events, delay=0.05)


def _wide_notebook(page: Page) -> None:
    """Fold the file browser away (click its tab), so the notebook gets the page's width."""
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()
    expect(page.locator("#jp-left-stack")).to_be_hidden()


def _shoot(page: Page, element: Locator, path: Path) -> None:
    # The pictures sit on README pages that are mostly light.
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true")
    # No hover highlight or tooltip on the picture; animations settled.
    page.mouse.move(0, 0)
    element.screenshot(path=str(path), animations="disabled", caret="hide")
    assert path.stat().st_size < 150_000, "README pictures stay small: clip, scale 1"


def test_screenshot_of_a_finished_tool_calling_cell(
    lab: Lab, page: Page, server: OfflineServer, tmp_path: Path
) -> None:
    page.set_viewport_size(VIEWPORT)
    server.enqueue(
        tool_calls(WEATHER_CALLS),  # two calls in one response: they run in parallel
        text(WEATHER_ANSWER, chunk_size=6, delay=0.01),
    )
    nb = lab.open(page, "tool-cell", [WEATHER_TOOL, "%load_ext clarifai_magic", WEATHER_QUESTION])
    _wide_notebook(page)
    nb.run_all()
    nb.wait_done(2)

    cell, out = nb.cells.nth(2), nb.output(2)
    # Each call folded to one line: name, arguments, the start of the result, duration.
    summaries = out.locator("summary", has_text="get_weather")
    expect(summaries).to_have_text(
        [
            re.compile(r'get_weather\(location="Paris, France"\) → temperature=18\.0, .* · '),
            re.compile(r'get_weather\(location="Bogotá, Colombia"\) → temperature=14\.5, .* · '),
        ]
    )
    expect(out.locator("strong", has_text="14.5 °C")).to_be_visible()
    expect(out.locator("pre", has_text="for c in (18.0, 14.5)")).to_be_visible()
    expect(out.locator("sub")).to_contain_text("gpt-4o")  # the footer: the turn ended
    expect(out.locator("sub")).to_contain_text("2 rounds")
    tool_messages = [m for m in server.chat_requests[-1].json["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_1", "call_2"]
    assert '"temperature": 14.5' in tool_messages[1]["content"]

    # Another cell active: no selection bar or cell toolbar on the picture.
    nb.cells.nth(1).locator(".jp-InputPrompt").click()
    _shoot(page, cell, _shot_path(tmp_path, "tool-cell.png"))


def test_screenshot_of_the_chat_panel_mid_answer(
    lab: Lab, page: Page, server: OfflineServer, tmp_path: Path
) -> None:
    page.set_viewport_size(VIEWPORT)
    nb = lab.open(page, "panel-streaming", ["%load_ext clarifai_magic", "%clarifai chat"])
    _wide_notebook(page)
    nb.run_all()
    nb.wait_done(1)
    panel = nb.output(1).locator(".clarifai-chat")
    expect(panel).to_contain_text("conversation main")

    server.enqueue(_slow_answer(PANEL_START, PANEL_REST))
    panel.locator("textarea").click()
    page.keyboard.type(PANEL_QUESTION)
    page.keyboard.press("Enter")

    answer = panel.locator(".clarifai-chat-assistant").last
    expect(panel.locator(".clarifai-chat-user").last).to_contain_text(PANEL_QUESTION)
    expect(answer.locator("h2", has_text="Plotting one column")).to_be_visible(timeout=15_000)
    expect(answer.locator("pre", has_text='df["revenue"].plot')).to_be_visible()
    expect(answer.locator("li", has_text="The dates are parsed")).to_be_visible()
    # Still streaming: the end has not come, Stop is live, Send waits, and no footer yet.
    expect(answer).not_to_contain_text(PANEL_LAST_WORDS)
    expect(panel.locator("button", has_text="Stop")).to_be_enabled()
    expect(panel.locator("button", has_text="Send")).to_be_disabled()
    expect(answer.locator("sub")).to_have_count(0)
    expect(panel.locator("textarea")).to_have_value("")
    # The messages box scrolls past 480 px: all of this must fit, with no scrollbar in the way.
    assert answer.evaluate("e => e.parentElement.scrollHeight <= e.parentElement.clientHeight")

    _shoot(page, panel, _shot_path(tmp_path, "panel-streaming.png"))

    # The picture was mid-answer: Stop then keeps a part, not the whole.
    panel.locator("button", has_text="Stop").click()
    expect(answer).to_contain_text("Interrupted", timeout=5_000)
    expect(answer).not_to_contain_text(PANEL_LAST_WORDS)
