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


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stream(answer: str, chars_per_second: float, size: int = 4) -> tuple[list, Sealer, str]:
    """Feed ``answer`` in chunks at a model's speed; the frames sent (time, frame), the sealer
    and the final Markdown."""
    clock, round_ = Clock(), Round()
    turn = Transcript(model="openai/chat-completion/models/gpt-4o", rounds=[round_])
    sealer = Sealer(clock=clock)
    frames = []
    for start in range(0, len(answer), size):
        clock.now += size / chars_per_second
        round_.stream.feed(chunk({"content": answer[start : start + size]}))
        frame = sealer.step(turn)
        if frame is not None:
            frames.append((clock.now, frame))
    turn.status, turn.ended = "done", clock.now
    return frames, sealer, sealer.whole(turn)


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
    # Never before a closing fence, nor inside a table, nor before an indented line.
    assert soft_seal_point("```\na\n```\n") == (4, "```\n")  # before "a", not the fence
    assert soft_seal_point("| a | b |\n|---|---|\n| 1 | 2 |\n") == (0, "")
    assert soft_seal_point("- item\n  continued\n  more\n") == (0, "")
    # A paragraph of many lines may be cut at a line end; nothing is cut in a growing last line.
    assert soft_seal_point("one\ntwo\nthree") == (4, "")
    assert soft_seal_point("Title\n-----\n") == (0, "")
