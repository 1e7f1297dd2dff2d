"""Untrusted text as Markdown: nothing the model, a tool or a server sends can become markup.

The Markdown is rendered here with mistune (nbconvert's renderer, installed with JupyterLab) with
raw HTML allowed, as a trusted notebook output is; the HTML that comes out is parsed and every tag
checked. The same payloads run in JupyterLab itself in tests/browser/test_hostile_markup.py.
"""

from __future__ import annotations

import html
import random
import re
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import mistune
import pytest

from clarifai_magic.engine import Round, ToolActivity, Transcript
from clarifai_magic.render import (
    THINKING_STYLE,
    history_markdown,
    safe_markdown_within,
    tool_summary,
    transcript_markdown,
)
from clarifai_magic.safe_markdown import code_blocks as answer_code_blocks
from clarifai_magic.safe_markdown import code_span, safe_markdown, seal_point
from clarifai_magic.stream import ToolCall
from clarifai_magic.testing import chunk
from clarifai_magic.tools import ToolOutcome

# What a rendered answer may contain: Markdown's own elements and the few the views write.
ALLOWED_TAGS = {
    *("p", "a", "code", "pre", "em", "strong", "del", "h1", "h2", "h3", "ul", "ol", "li"),
    *("blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "span"),
    *("details", "summary", "sub", "h4", "h5", "h6"),
}
PAYLOADS = {
    "script": "<script>window.__pwned = 1</script>",
    "img onerror": "<img src=x onerror=alert(1)>",
    "iframe": '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    "svg onload": "<svg onload=alert(1)>",
    "style": "<style>body { display: none }</style>",
    "comment": "<!-- hidden --> <b>bold</b>",
    "processing instruction": "<?xml version='1.0'?>",
    "declaration": "<!DOCTYPE html><![CDATA[ x ]]>",
    "closing details": "</details></summary><img src=x onerror=alert(1)>",
    "upper case": "<IMG SRC=x ONERROR=alert(1)>",
    "split over lines": "<img\nsrc=x\nonerror=alert(1)>",
}
# No math plugin: JupyterLab cuts math out before Markdown is read (see the browser test).
render = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def tags(markdown: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = _Tags()
    parser.feed(render(markdown))
    return parser.tags


def assert_inert(markdown: str) -> None:
    """No element outside the allowed set, no event handler, no URL fetched by the page."""
    for tag, attrs in tags(markdown):
        if tag == "div":  # only ours, around reasoning
            assert attrs == [("style", THINKING_STYLE)], f"<div {attrs}> got through:\n{markdown}"
            continue
        assert tag in ALLOWED_TAGS, f"<{tag}> got through:\n{markdown}"
        for name, value in attrs:
            if name == "style" and tag in ("th", "td"):  # the renderer's column alignment
                assert re.fullmatch(r"text-align:\w+;?", value or ""), value
                continue
            assert not name.startswith("on") and name not in ("src", "srcdoc", "style"), (
                f"<{tag} {name}> got through:\n{markdown}"
            )


def transcript(
    text: str = "",
    reasoning: str = "",
    tools: list[ToolActivity] | None = None,
    **fields: Any,
) -> Transcript:
    round_ = Round()
    delta = {k: v for k, v in (("content", text), ("reasoning_content", reasoning)) if v}
    if delta:
        round_.stream.feed(chunk(delta))
    round_.tools = tools or []
    return Transcript(model="openai/chat-completion/models/gpt-4o", rounds=[round_], **fields)


def activity(
    arguments: str = "{}", result: str | None = None, traceback: str | None = None, **fields: Any
) -> ToolActivity:
    call = ToolCall(id="c1", name="fetch", arguments=arguments)
    outcome = None
    if result is not None:
        outcome = ToolOutcome(
            call_id="c1",
            name="fetch",
            arguments={},
            content=result,
            ok=traceback is None,
            error=None if traceback is None else "boom",
            traceback=traceback,
        )
    return ToolActivity(call=call, outcome=outcome, **fields)


def code_blocks(markdown: str) -> list[str]:
    return [
        m.group(1)
        for m in re.finditer(r"<pre><code[^>]*>(.*?)</code></pre>", render(markdown), re.S)
    ]


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_raw_html_from_the_model_renders_as_text(payload: str) -> None:
    markdown = safe_markdown(f"Look: {payload} done.")
    assert_inert(markdown)
    shown = render(markdown)
    assert "&lt;" in shown and "done." in shown


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_every_untrusted_place_of_a_turn_is_escaped(payload: str) -> None:
    turn = transcript(
        text=f"Answer {payload}",
        reasoning=f"Thinking {payload}",
        tools=[
            activity(
                arguments=f'{{"q": "{payload}"}}'.replace("\n", " "),
                result=f"```\n{payload}\n```\n{payload}",
                traceback=f"Traceback\n```\n{payload}",
            )
        ],
        notices=[f"Note {payload}"],
        waiting=f"waiting {payload}",
        status="error",
        error=f"Server said {payload}\n```\n{payload}",
    )
    markdown = transcript_markdown(turn, final=True)
    assert_inert(markdown)
    # Our own markup is still markup: the sections and the footer.
    assert [t for t, _ in tags(markdown)].count("details") == 2
    assert "<sub" in render(markdown)
    assert "**Error.**" in markdown


def test_thinking_is_folded_quoted_grey_and_says_how_long() -> None:
    turn = transcript(text="Six.", reasoning="Two threes make six.\n\nSo: six.")
    html_ = render(transcript_markdown(turn, final=True, thought={0: 2.04}))
    assert "<summary>Thinking · 2.0 s</summary>" in html_
    inside = html_.split(f'<div style="{THINKING_STYLE}">', 1)[1].split("</div>", 1)[0]
    # Both paragraphs of the reasoning are in the grey block, quoted; the answer is not.
    assert inside.strip().startswith("<blockquote>")
    assert "Two threes make six." in inside and "So: six." in inside
    assert "<p>Six.</p>" not in inside
    assert html_.index("</details>") < html_.index("<p>Six.</p>")


def test_code_keeps_its_text_as_written() -> None:
    markdown = safe_markdown(
        "Compare `a < b` and `<div>` and ``x ` <b>``.\n\n```html\n<div onclick=x>a < b</div>\n```"
    )
    assert_inert(markdown)
    html = render(markdown)
    assert "<code>a &lt; b</code>" in html and "<code>&lt;div&gt;</code>" in html
    assert "<code>x ` &lt;b&gt;</code>" in html
    assert code_blocks(markdown) == ["&lt;div onclick=x&gt;a &lt; b&lt;/div&gt;\n"]


def test_a_fence_cannot_be_closed_early_by_what_is_inside_it() -> None:
    # A four-backtick block holding a three-backtick line, and a ~~~ block holding ```.
    four = "````\n```\n<script>x</script>\n```\n````\nafter <img src=x onerror=1>"
    tilde = "~~~md\n```\n<img src=x onerror=1>\n~~~\nafter <b>"
    for text in (four, tilde):
        markdown = safe_markdown(text)
        assert_inert(markdown)
        [block] = code_blocks(markdown)
        assert "```" in block and "&lt;" in block
        assert "after &lt;" in render(markdown)


def test_an_open_fence_mid_stream_is_closed_where_the_text_ends() -> None:
    markdown = safe_markdown("Here:\n```python\nx = '<b>'\n")
    assert_inert(markdown)
    assert code_blocks(markdown) == ["x = '&lt;b&gt;'\n\n"]
    # Whatever follows the piece is outside the block.
    assert code_blocks(markdown + "\n\nafter") == code_blocks(markdown)


def test_fence_like_lines_that_are_not_fences_cannot_start_one() -> None:
    # A list item closing its own fence, then a bare line: the classic break-out.
    text = "- ```\n  x\n  ```\n<img src=x onerror=1>\n```"
    assert_inert(safe_markdown(text))
    # Under-indented lines end a fence that may belong to a list item.
    text = "- item\n  ```\n<img src=x onerror=1>\n  ```"
    assert_inert(safe_markdown(text))
    assert_inert(safe_markdown("> ```\n> <b>\n```\n<img src=x onerror=1>\n```"))


def test_a_link_definition_cannot_swallow_a_fence() -> None:
    # marked reads a definition's title over many lines; ending it inside a block would leave
    # the rest of the block to be read as HTML. The "[" is escaped, so there is no definition.
    text = '[a]: /u "\n```\nx"\n<img src=x onerror=1>\n```'
    markdown = safe_markdown(text)
    assert markdown.startswith("\\[a]:")
    # An ordinary link at the start of a line stays a link.
    assert safe_markdown("[Docs](https://example.com) here") == "[Docs](https://example.com) here"


def test_images_become_links_so_the_page_fetches_nothing() -> None:
    markdown = safe_markdown("See ![chart](https://evil.example/pixel.png) and ![r][ref]")
    found = tags(markdown)
    assert "img" not in [t for t, _ in found]
    assert ("a", [("href", "https://evil.example/pixel.png")]) in found


def test_ordinary_markdown_still_renders() -> None:
    text = (
        "## Result\n\n"
        "Some **bold**, *italic*, a [link](https://example.com) and $x^2$.\n\n"
        "1. first\n2. second\n\n"
        "| name | value |\n|---|---:|\n| `<a>` | 1 < 2 |\n\n"
        "```python\nprint('hi')\n```\n"
    )
    markdown = safe_markdown(text)
    assert_inert(markdown)
    html = render(markdown)
    for piece in (
        "<h2>Result</h2>",
        "<strong>bold</strong>",
        "<em>italic</em>",
        '<a href="https://example.com">link</a>',
        "<li>first</li>",
        "<table>",
        "<code>&lt;a&gt;</code>",
        "1 &lt; 2",
        '<code class="language-python">',
    ):
        assert piece in html, piece
    assert "$x^2$" in markdown  # math is left for the front end's MathJax


def test_code_in_a_list_item_stays_code() -> None:
    markdown = safe_markdown("1. Install:\n   ```bash\n   pip install '<pkg>'\n   ```\n2. Run")
    assert_inert(markdown)
    assert code_blocks(markdown) == ["pip install '&lt;pkg&gt;'\n"]
    assert render(markdown).count("<li>") == 2


def test_history_escapes_stored_messages_and_sizes_the_tool_fence() -> None:
    payload = PAYLOADS["img onerror"]
    stored = [
        SimpleNamespace(message={"role": "user", "content": f"Q {payload}"}, partial=False),
        SimpleNamespace(
            message={
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"function": {"name": "fetch", "arguments": '{"u": "`<b>`"}'}, "id": "c1"}
                ],
            },
            partial=False,
        ),
        SimpleNamespace(
            message={"role": "tool", "name": "fetch", "content": f"```\n{payload}\n```\n{payload}"},
            partial=False,
        ),
        SimpleNamespace(message={"role": "assistant", "content": f"A {payload}"}, partial=True),
    ]
    markdown = history_markdown("main", stored)
    assert_inert(markdown)
    # The whole tool result sits in one block, break-out line included.
    [block] = code_blocks(markdown)
    assert block.count("&lt;img") == 2
    assert "(partial)" in markdown


def test_the_tool_summary_and_code_spans_stay_on_one_line() -> None:
    name_breaks_out = ToolActivity(
        call=ToolCall(id="c", name="x</summary>\n\n<img src=x onerror=1>", arguments="{}")
    )
    markdown = transcript_markdown(transcript(tools=[name_breaks_out]), final=False)
    assert_inert(markdown)
    assert code_span("a ``` b") == "````a ``` b````"
    assert code_span("`x`") == "`` `x` ``"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({}, "not run (the turn ended first)"),
        ({"started": True, "is_async": True}, "cancelled"),
        ({"started": True, "is_async": False}, "may still be finishing in the background"),
    ],
)
def test_a_tool_cut_off_by_the_end_of_the_turn_says_what_happened(
    fields: dict[str, Any], said: str
) -> None:
    line = tool_summary(activity(**fields), turn_over=True)
    assert line.endswith(said)
    assert tool_summary(activity(**fields), turn_over=False).endswith("…")


def test_the_tool_summary_shows_what_the_result_found_not_its_echo() -> None:
    weather = activity(
        arguments='{"location": "Paris, France"}',
        result='{"location": "Paris, France", "temperature": 18.0, "unit": "celsius"}',
    )
    line = tool_summary(weather)
    assert line.startswith('fetch(location="Paris, France") → temperature=18.0, unit="celsius" · ')
    # Results that are not JSON objects, or only echo, are shown as they are.
    assert '→ ["a", "b"] · ' in tool_summary(activity(result='["a", "b"]'))
    assert "→ plain text · " in tool_summary(activity(result="plain text"))
    echo = activity(arguments='{"q": "x"}', result='{"q": "x"}')
    assert '→ q="x" · ' in tool_summary(echo)


def test_an_incomplete_stream_is_said_as_such() -> None:
    turn = transcript(
        text="Half an answer", status="incomplete", error="The stream ended <b>early</b>."
    )
    markdown = transcript_markdown(turn, final=True)
    assert "> ⚠️ **Incomplete.** The stream ended &lt;b>early&lt;/b>." in markdown
    assert "**Error.**" not in markdown


def test_a_display_past_its_limit_shows_the_head_and_says_why() -> None:
    text = "Intro.\n\n```python\n" + "x = '<b>'\n" * 30_000 + "```\n\nThe end."
    turn = transcript(text=text)
    turn.ended = turn.started + 1  # a fixed footer
    markdown = transcript_markdown(turn, final=True, max_chars=20_000)
    assert len(markdown) <= 20_000
    assert markdown.startswith("Intro.")
    assert "The end." not in markdown
    assert f"({len(text):,} characters; the limit is `%config ClarifaiMagics." in markdown
    assert "kept in the conversation (`%clarifai history`) and in `--out`" in markdown
    assert_inert(markdown)
    # The cut block is closed: the notice and the footer are outside it.
    html = render(markdown)
    assert "too long to show in full" in html.rsplit("</pre>", 1)[1]
    assert "<sub" in html.rsplit("</pre>", 1)[1]
    # Under the limit nothing changes.
    assert transcript_markdown(turn, final=True) == transcript_markdown(
        turn, final=True, max_chars=len(text) * 2
    )


def test_escaping_that_lengthens_text_still_fits_the_limit() -> None:
    markdown = safe_markdown_within("<b>" * 50_000, 10_000)
    assert len(markdown) <= 10_000
    assert "too long to show in full" in markdown
    assert_inert(markdown)


FRAGMENTS = [
    "```", "````", "~~~", "`", "``", "\n", "\n\n", "- ", "1. ", "> ", "   ", "    ", "\t",
    '[a]: /u "', '"', "]:", "[", "]", "|---|---|\n", "| a | b |", "$", "\\\\(", "\\\\)", "\\",
    "![x](y)", "text", "<img src=x onerror=alert(1)>", "<script>x</script>", "<!--", "-->",
    "<style>", "python", "***", "<", "a", "\r",
]  # fmt: skip


def test_random_mixes_of_markdown_and_payloads_stay_inert() -> None:
    rng = random.Random(12)
    for _ in range(400):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(5, 40)))
        markdown = safe_markdown(text)
        assert_inert(markdown)
        # Pieces are joined by blank lines in a view: still inert together.
        assert_inert(markdown + "\n\n" + safe_markdown(text[::-1]))


# -- sealing: finished blocks drawn once, apart from the open tail --------------------------------
def _same_html(markdown: str) -> str:
    return re.sub(r"\s+", " ", render(markdown)).replace("> <", "><").strip()


def _sealed_pieces(text: str) -> list[str]:
    """``text`` cut as a streaming view cuts it, at every prefix it sees."""
    pieces, start = [], 0
    for end in range(1, len(text) + 1):
        cut = seal_point(text[:end], start)
        assert cut >= start
        if cut > start:
            pieces.append(text[start:cut])
            start = cut
    return [*pieces, text[start:]]


def test_blocks_are_sealed_only_outside_code_fences() -> None:
    text = (
        "## Plan\n\nFirst paragraph.\n\n```python\ndef f():\n\n    return 1\n\n```\n\n"
        "Between.\n\n- item one\n\n- item two\n\n    still item two\n\nAfter the list.\n\nEnd"
    )
    pieces = _sealed_pieces(text)
    assert "".join(pieces) == text
    assert "```python\ndef f():\n\n    return 1\n\n```\n\n" in "".join(
        p for p in pieces if p.startswith("```")
    ), "the fence stays whole in one piece"
    for piece in pieces[:-1]:
        assert piece.endswith("\n\n")
        assert piece.count("```") % 2 == 0, f"a piece ends inside code: {piece!r}"
    # The list and its continuation stay together; nothing starts with indentation or a marker.
    assert any("- item one" in p and "still item two" in p for p in pieces)
    assert not any(p.startswith(("-", " ")) for p in pieces)


def test_sealed_blocks_render_as_the_whole_answer_does() -> None:
    rng = random.Random(7)
    blocks = [
        "# Title", "A paragraph with `code` and **bold**.", "- a\n- b", "1. one\n2. two",
        "```js\nlet x = 1;\n\nlet y = 2;\n```", "| a | b |\n|---|---|\n| 1 | 2 |", "> quoted",
        "~~~\n```\n~~~", "    indented code", "Text <b>html</b> and ![img](x)", "$x$ and $$y$$",
        "[ref]: /url", "***",
    ]  # fmt: skip
    for _ in range(200):
        text = "\n\n".join(rng.choice(blocks) for _ in range(rng.randint(2, 8)))
        pieces = _sealed_pieces(text)
        joined = "\n\n".join(safe_markdown(p) for p in pieces)
        assert _same_html(joined) == _same_html(safe_markdown(text)), pieces
        for piece in pieces:
            assert_inert(safe_markdown(piece))


def test_random_mixes_cut_into_sealed_blocks_render_as_the_whole() -> None:
    rng = random.Random(21)
    for _ in range(300):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(5, 60)))
        pieces = _sealed_pieces(text)
        assert "".join(pieces) == text
        joined = "\n\n".join(safe_markdown(p) for p in pieces)
        assert _same_html(joined) == _same_html(safe_markdown(text)), pieces
        assert_inert(joined)


def test_an_error_before_any_answer_is_said_alone() -> None:
    turn = transcript(status="error", error="The model gpt-x does not exist.")
    markdown = transcript_markdown(turn, final=True)
    assert "does not exist" in markdown
    assert "<sub" not in markdown and "token usage" not in markdown


def test_a_tool_call_is_one_short_line_and_its_json_result_is_pretty_printed() -> None:
    done = activity(
        arguments='{"location": "Paris, France", "unit": "celsius", "days": 7}',
        result='{"city": "Paris", "temperature": 21, "sky": "clear and bright"}',
    )
    markdown = transcript_markdown(transcript(tools=[done]), final=True)
    summary = re.search(r"<summary>(.*?)</summary>", markdown)
    assert summary is not None
    shown = html.unescape(summary.group(1))
    assert len(shown) < 110 and "\n" not in shown and "0.00 s" not in shown, shown
    assert '>   "temperature": 21,' in markdown  # pretty-printed, inside the quoted container
    assert "**Arguments**" in markdown and "**Result**" in markdown


def test_code_blocks_for_copy_and_insert_are_the_blocks_the_page_shows() -> None:
    answer = (
        "Run this:\n\n"
        "````markdown\n```python\nprint(1)\n```\n````\n\n"  # a fence inside a longer one
        "~~~bash\npip install x\n~~~\n\n"
        "- in a list:\n\n  ```python\n  x = 1\n    y = 2\n  ```\n\n"
        "Not a fence: ``` inline ``` code.\r\n\r\n"
        "```python\r\nstill(open)"
    )
    assert answer_code_blocks(answer) == [
        ("markdown", "```python\nprint(1)\n```"),
        ("bash", "pip install x"),
        ("python", "x = 1\n  y = 2"),
        ("python", "still(open)"),
    ]
    for lang, code in answer_code_blocks(answer):
        # What the page draws as that block (safe_markdown then a renderer) holds that code.
        shown = [html.unescape(block) for block in code_blocks(safe_markdown(answer))]
        assert any(code in block for block in shown), (lang, code)


def test_web_autolinks_stay_links_and_other_angle_brackets_stay_text() -> None:
    markdown = safe_markdown(
        "Docs: <https://example.org/a?b=1&c=2>, mail <mailto:team@example.org>, "
        'not <javascript:alert(1)> nor <https://x.org/"onclick="y> nor <b>bold</b>.'
    )
    assert_inert(markdown)
    shown = render(markdown)
    hrefs = re.findall(r'<a href="([^"]*)"', shown)
    assert hrefs == ["https://example.org/a?b=1&amp;c=2", "mailto:team@example.org"]
    assert "&lt;javascript:alert(1)&gt;" in shown and "&lt;b&gt;bold&lt;/b&gt;" in shown
