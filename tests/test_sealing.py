"""Append-only streaming decisions (``sealing.Sealer``), on a simulated clock: what is sealed,
what is redrawn, how long text can wait, and that every piece renders as what it is."""

from __future__ import annotations

import mistune
import pytest

from clarifai_magic.engine import Round, Transcript
from clarifai_magic.safe_markdown import safe_markdown, soft_seal_point
from clarifai_magic.sealing import Sealer
from clarifai_magic.testing import chunk

render = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])

CODE = "".join(f"    value_{n} = compute({n}) * 2  # step {n}\n" for n in range(60))
LONG_CODE_ANSWER = f"Here is the script:\n\n```python\ndef main():\n{CODE}```\n\nRun it."
LIST_ANSWER = "Steps:\n\n" + "".join(f"- step {n}: do the thing number {n}\n" for n in range(40))
TABLE_ANSWER = "| n | square | note |\n|---|---|---|\n" + "".join(
    f"| {n} | {n * n} | row number {n} of the table |\n" for n in range(80)
)
NESTED_LIST = "- Plan\n" + "".join(f"  - sub-step {n}: check item {n} twice\n" for n in range(70))
ONE_LINE = " ".join(f"Sentence {n} says a little more about the topic." for n in range(60))
CRLF_ANSWER = LONG_CODE_ANSWER.replace("\n", "\r\n")
TEXT_LINES = "".join(f"line {n}: plain output, as a program prints it\n" for n in range(70))
JSON_ANSWER = "{\n" + "".join(f'  "key_{n}": "value {n}",\n' for n in range(80)) + '  "end": 0\n}'


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stream(
    answer: str, chars_per_second: float, size: int = 4, **options
) -> tuple[list, Sealer, str]:
    """Feed ``answer`` in chunks at a model's speed; the frames sent (time, frame), the sealer
    and the final Markdown."""
    clock, round_ = Clock(), Round()
    turn = Transcript(model="openai/chat-completion/models/gpt-4o", rounds=[round_])
    sealer = Sealer(clock=clock, **options)
    frames = []
    for start in range(0, len(answer), size):
        clock.now += size / chars_per_second
        round_.stream.feed(chunk({"content": answer[start : start + size]}))
        frame = sealer.step(turn)
        if frame is not None:
            frames.append((clock.now, frame))
    turn.status, turn.ended = "done", clock.now
    return frames, sealer, sealer.whole(turn)


def gaps_and_bytes(frames: list, final: str, answer: str) -> tuple[float, float]:
    """The longest wait between frames (s) and display bytes ÷ answer bytes."""
    times = [t for t, _ in frames]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    sent = sum(len(f.sealed or "") + len(f.tail or "") for _, f in frames) + len(final)
    return max(gaps), sent / len(answer)


@pytest.mark.parametrize(
    ("answer", "fmt"),
    [
        (TABLE_ANSWER, "markdown"),
        (NESTED_LIST, "markdown"),
        (ONE_LINE, "markdown"),
        (CRLF_ANSWER, "markdown"),
        (TEXT_LINES, "text"),
        (JSON_ANSWER, "json"),
    ],
    ids=["table", "nested-list", "one-line", "crlf", "text", "json"],
)
def test_blocks_that_seal_no_other_way_still_stream_at_model_speed(answer: str, fmt: str) -> None:
    frames, sealer, final = stream(answer, chars_per_second=120, fmt=fmt)
    gap, ratio = gaps_and_bytes(frames, final, answer)
    assert gap < 1.5, f"text waited {gap:.1f} s"
    assert ratio <= 3, f"{ratio:.2f}x the answer's bytes"
    assert sealer.seamed  # so the final frame is the whole, drawn as one


def test_a_table_cut_mid_stream_renders_as_tables_with_their_header() -> None:
    frames, _, _ = stream(TABLE_ANSWER, chars_per_second=120)
    pieces = [f.sealed for _, f in frames if f.sealed is not None]
    assert len(pieces) >= 2
    for piece in pieces:
        html = render(piece)
        assert html.count("<table>") == 1 and "<th>square</th>" in html, piece
        assert "| row number" not in html  # every row is in the table, none left as text


def test_sealed_blocks_and_tail_stay_within_max_chars() -> None:
    # Escaping lengthens this text (every "<" becomes "&lt;"): within the limit as received,
    # past it as Markdown. What is shown while streaming, and the final frame, stay within it.
    answer = "".join(f"Paragraph {n} compares <a> with <b> and <c>.\n\n" for n in range(100))
    limit = len(answer) + 200
    clock, round_ = Clock(), Round()
    turn = Transcript(model="openai/chat-completion/models/gpt-4o", rounds=[round_])
    sealer = Sealer(clock=clock, max_chars=limit)
    sealed = 0
    for start in range(0, len(answer), 8):
        clock.now += 0.05
        round_.stream.feed(chunk({"content": answer[start : start + 8]}))
        frame = sealer.step(turn)
        if frame is not None and frame.sealed is not None:
            sealed += len(frame.sealed)
        if frame is not None and frame.tail is not None:
            assert sealed + len(frame.tail) <= limit + 100  # the notice, at most
    turn.status, turn.ended = "done", clock.now
    assert sealed <= limit
    assert sealer.final_tail(turn) is None  # the whole, clipped with its notice, is shown instead
    whole = sealer.whole(turn)
    assert len(whole) <= limit and "too long to show in full" in whole


@pytest.mark.parametrize("answer", [LONG_CODE_ANSWER, LIST_ANSWER], ids=["code", "list"])
def test_a_long_block_at_model_speed_never_stalls_and_ends_whole(answer: str) -> None:
    frames, sealer, final = stream(answer, chars_per_second=120)
    times = [t for t, _ in frames]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # One open block, 2,800 characters over 23 s: without sealing inside it, the tail could be
    # redrawn only each time it grew by half again (seconds apart near the end).
    assert max(gaps) < 1.5, f"text waited {max(gaps):.1f} s"
    assert sealer.seamed and sum(f.sealed is not None for _, f in frames) >= 3
    sent = sum(len(f.sealed or "") + len(f.tail or "") for _, f in frames)
    assert sent + len(final) <= 3 * len(answer)
    # The final frame is drawn whole: the seams are gone, the block renders as one.
    assert final.startswith(safe_markdown(answer).rstrip())


def test_pieces_of_a_code_block_each_render_as_code() -> None:
    frames, _, _ = stream(LONG_CODE_ANSWER, chars_per_second=120)
    pieces = [f.sealed for _, f in frames if f.sealed is not None]
    code_pieces = [p for p in pieces if "value_" in p]
    assert len(code_pieces) >= 2
    for piece in code_pieces:
        html = render(piece)
        # Every line of code in the piece is inside <pre>, none leaks out as text.
        outside = html.split("<pre>")[0] + "".join(
            part.split("</pre>", 1)[1] for part in html.split("<pre>")[1:]
        )
        assert "value_" not in outside, piece


def test_soft_seal_points() -> None:
    code = "```python\nimport a\nimport b\nimport c\n"
    cut, again = soft_seal_point(code)
    assert (code[:cut], again) == ("```python\nimport a\nimport b\n", "```python\n")
    # From that cut, reopened, the next one is still in the code block.
    more = code + "import d\n"
    cut2, again2 = soft_seal_point(more, cut, again)
    assert (more[cut:cut2], again2) == ("import c\n", "```python\n")
    # Never before a closing fence, nor before an indented line; a table is cut between rows
    # (its first row stays with its head), and reopened with its header.
    assert soft_seal_point("```\na\n```\n") == (4, "```\n")  # before "a", not the fence
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"
    assert soft_seal_point(table) == (table.index("| 3"), "| a | b |\n|---|---|\n")
    assert soft_seal_point("| a | b |\n|---|---|\n| 1 | 2 |\n") == (0, "")
    assert soft_seal_point("- item\n  continued\n  more\n") == (0, "")
    # "\r\n" ends a line as "\n" does; a lone "\r" (maybe half of one) is gone no further than.
    assert soft_seal_point("one\r\ntwo\r\nthree") == (5, "")
    assert soft_seal_point("one\rtwo\nthree\n") == (0, "")
    # One long line: between its last two words, outside code spans, never in a fence line.
    assert soft_seal_point("Use `a b` and then c") == (len("Use `a b` and then "), "")
    assert soft_seal_point("Use `a b") == (0, "")
    assert soft_seal_point("```python one two") == (0, "")
    assert soft_seal_point("```\nprint(a, b)") == (len("```\nprint(a, "), "```\n")
    # Not after a list marker or a run of "-" / "=" alone: it would underline the paragraph above
    # as a heading. An escaped backtick opens no code span.
    assert soft_seal_point("Intro " * 70 + "\n- item") == (0, "")
    assert soft_seal_point("--- foo") == (0, "")
    escaped = "a \\` b `code span here` and more words"
    assert soft_seal_point(escaped) == (len("a \\` b `code span here` and more "), "")
    # A paragraph of many lines may be cut at a line end; nothing is cut in a growing last line.
    assert soft_seal_point("one\ntwo\nthree") == (4, "")
    assert soft_seal_point("Title\n-----\n") == (0, "")
