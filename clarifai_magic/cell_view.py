"""The notebook cell's view of a turn: Markdown that streams append-only, sending each byte about
once, and ends as one static Markdown output.

Redrawing the whole answer at every frame sends bytes that grow with how long the answer takes,
not with its size. Here finished blocks of the answer (cut by
:func:`~clarifai_magic.safe_markdown.seal_point`: at a blank line, outside code, where a block
renders alone as it does in the whole) are *sealed*: the output that showed them gets them once,
whole, and is never updated again, and a new output below takes the open block (the *tail*), the
only part redrawn. Tail redraws are held to a byte budget in proportion to the text received, so
display bytes ÷ answer bytes stays under 3 at any length and speed; at most 20 messages a second.
At the end the tail becomes the whole final Markdown and the others are emptied, so a saved
notebook holds the answer as one Markdown output (nbviewer and GitHub render it). The sealed
outputs share one display id, so emptying them all is one message however many there are.

Untrusted text still goes through :func:`~clarifai_magic.safe_markdown.safe_markdown`: each
sealed block and the tail are escaped as a whole.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from .models import model_id
from .options import DEFAULT_MAX_DISPLAY_CHARS
from .render import (
    MAX_UPDATES_PER_SECOND,
    TOOLS_SPACER,
    TextBudget,
    answer_markdown,
    clip_plain,
    reasoning_markdown,
    status_markdown,
    tool_markdown,
    transcript_markdown,
)
from .safe_markdown import seal_point
from .transcript import Transcript

# Seal once this much is sealable, or a sixteenth of what is sealed already: a long answer uses a
# few dozen outputs, not thousands (each stays in the notebook, emptied), while the tail, redrawn,
# stays small.
SEAL_MIN_CHARS = 240
SEAL_GROWTH = 16
# Tail redraws may send this many characters per character received, plus a start-up allowance
# (the first frames of a short answer); sealed blocks (1x) and the final frame (1x) come on top.
TAIL_RATIO = 0.3
TAIL_SLACK = 250
# Up to this size the final text/plain is the answer itself; past it, a one-line stand-in.
PLAIN_ANSWER_CHARS = 256
TOO_LONG_WHILE_STREAMING = "*Still streaming: too long to show here until it ends…*"


@dataclass(frozen=True)
class Mark:
    """A place in a turn: round ``round``, before its reasoning (``offset`` -1) or after
    ``offset`` characters of its answer text."""

    round: int
    offset: int


def segment_markdown(
    transcript: Transcript, start: Mark, end: Mark | None, fmt: str, thought: dict[int, float]
) -> list[str]:
    """The Markdown parts of the turn from ``start`` to ``end`` (``None``: all that has come),
    drawn as :func:`~clarifai_magic.render.transcript_markdown` draws them while streaming."""
    parts: list[str] = []
    budget = TextBudget(None)
    last = len(transcript.rounds) - 1 if end is None else end.round
    for number in range(start.round, last + 1):
        round_ = transcript.rounds[number]
        lo = start.offset if number == start.round else -1
        if lo < 0:
            thinking = reasoning_markdown(round_, False, budget, thought.get(number))
            if thinking:
                parts.append(thinking)
            lo = 0
        whole_round = end is None or number < end.round
        text = round_.stream.text[lo:] if whole_round else round_.stream.text[lo : end.offset]
        if text:
            parts.append(answer_markdown(text, fmt))
        if whole_round and round_.tools:
            parts.extend(tool_markdown(activity, False, budget) for activity in round_.tools)
            parts.append(TOOLS_SPACER)
    return parts


def _bundle(markdown: str, plain: str) -> dict[str, Any]:
    return {"text/markdown": markdown, "text/plain": plain}


def _untrusted_size(transcript: Transcript) -> int:
    return sum(round_.stream.size for round_ in transcript.rounds) + sum(
        len(activity.outcome.content)
        for round_ in transcript.rounds
        for activity in round_.tools
        if activity.outcome is not None
    )


class CellView:
    """A turn in a notebook cell: sealed blocks above, the open tail redrawn below."""

    def __init__(
        self, fmt: str = "markdown", *, max_chars: int = DEFAULT_MAX_DISPLAY_CHARS
    ) -> None:
        from IPython.display import display, update_display

        self._display = display
        self._update_display = update_display
        self.fmt = fmt
        self.max_chars = max_chars
        self.interval = 1 / MAX_UPDATES_PER_SECOND
        self._next_at = 0.0
        self._sealed = Mark(0, -1)  # everything before this is in outputs never updated again
        self._tail_sent = 0
        self._sealed_chars = 0  # characters of tail frames sent: what the byte budget bounds
        self._last_tail: str | None = None
        # When each round's reasoning and answer began, to say how long it thought.
        self._reasoning_at: dict[int, float] = {}
        self._answer_at: dict[int, float] = {}
        waiting = "*Waiting for the model…*"
        # The first output is the first tail and, once sealed, the first sealed block: it is
        # shown under the id all sealed blocks share, which one update empties at the end.
        self._sealed_id = f"clarifai-sealed-{uuid.uuid4().hex}"
        self._tail = self._display(_bundle(waiting, "…"), raw=True, display_id=self._sealed_id)
        self._tail_is_sealed_id = True
        self.outputs = 1  # how many outputs this answer has used (all but the tail end empty)

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        now = time.monotonic()
        first_text = self._note_times(transcript, now)
        if final:
            self._finish(transcript)
            return
        if not (force or first_text) and now < self._next_at:
            return
        messages = self._draw(transcript, urgent=force or first_text)
        # Even when nothing was sent (the byte budget said wait): looking costs a join of the
        # text, which per chunk would be quadratic.
        self._next_at = now + max(messages, 1) * self.interval

    def _note_times(self, transcript: Transcript, now: float) -> bool:
        """Record when the last round started thinking and answering; True when its answer
        text first appears (drawn at once, so the first words show within a frame)."""
        if not transcript.rounds:
            return False
        number = len(transcript.rounds) - 1
        if number in self._answer_at:
            return False  # checked no more: joining the text per chunk would be quadratic
        stream = transcript.rounds[number].stream
        if number not in self._reasoning_at and stream.reasoning:
            self._reasoning_at[number] = now
        if stream.text or stream.tool_calls:
            self._answer_at[number] = now
            return bool(stream.text)
        return False

    def _thought(self, transcript: Transcript) -> dict[int, float]:
        end = transcript.ended or time.monotonic()
        return {
            number: self._answer_at.get(number, end) - began
            for number, began in self._reasoning_at.items()
        }

    def _draw(self, transcript: Transcript, *, urgent: bool) -> int:
        """Seal what can be, redraw the tail if it changed and the budget allows; the number of
        messages sent."""
        received = _untrusted_size(transcript)
        thought = self._thought(transcript)
        sealed = 0  # messages the seal took
        if self.fmt == "markdown" and transcript.rounds and received <= self.max_chars:
            sealed = self._seal(transcript, thought)
        tail = self._tail_markdown(transcript, thought, received)
        if sealed:
            # The rest goes to a new output below, which becomes the tail.
            self._tail = self._show(_bundle(tail, "…"), display_id=True)
            self._tail_is_sealed_id = False
        else:
            if tail == self._last_tail:
                return 0
            allowance = TAIL_RATIO * received + TAIL_SLACK - self._tail_sent
            if len(tail) > allowance and not urgent:
                return 0  # later, when more text has come: bytes stay in proportion to it
            self._tail.update(_bundle(tail, "…"), raw=True)
        self._tail_sent += len(tail)
        self._last_tail = tail
        return sealed + 1

    def _show(self, bundle: dict[str, Any], display_id: str | bool) -> Any:
        self.outputs += 1
        return self._display(bundle, raw=True, display_id=display_id)

    def _seal(self, transcript: Transcript, thought: dict[int, float]) -> int:
        """Show the blocks finished since the last seal, for good, where the tail was; the
        number of messages that took (0: nothing to seal yet)."""
        number = len(transcript.rounds) - 1
        text = transcript.rounds[number].stream.text
        lo = max(self._sealed.offset, 0) if self._sealed.round == number else 0
        cut = seal_point(text, lo)
        if cut - lo < max(SEAL_MIN_CHARS, self._sealed_chars // SEAL_GROWTH):
            return 0
        mark = Mark(number, cut)
        sealed = "\n\n".join(segment_markdown(transcript, self._sealed, mark, self.fmt, thought))
        self._sealed = mark
        self._sealed_chars += len(sealed)
        if self._tail_is_sealed_id:
            self._tail.update(_bundle(sealed, ""), raw=True)
            return 1
        # The tail's own id cannot join the shared one: empty it, show the block anew under it.
        self._tail.update({}, raw=True)
        self._show(_bundle(sealed, ""), display_id=self._sealed_id)
        return 2

    def _tail_markdown(
        self, transcript: Transcript, thought: dict[int, float], received: int
    ) -> str:
        if received > self.max_chars:
            parts = [TOO_LONG_WHILE_STREAMING]
        elif self.fmt == "markdown":
            parts = segment_markdown(transcript, self._sealed, None, self.fmt, thought)
        else:  # not sealed: a <pre> or JSON block is redrawn whole, within the byte budget
            return transcript_markdown(
                transcript, final=False, fmt=self.fmt, max_chars=self.max_chars, thought=thought
            )
        shown = bool(parts) or self._sealed != Mark(0, -1)
        return "\n\n".join(parts + status_markdown(transcript, False, shown=shown))

    def _finish(self, transcript: Transcript) -> None:
        """The whole turn into the tail; the sealed outputs emptied by one message (the saved
        notebook keeps them as outputs with no data, which every front end shows as nothing)."""
        markdown = transcript_markdown(
            transcript,
            final=True,
            fmt=self.fmt,
            max_chars=self.max_chars,
            thought=self._thought(transcript),
        )
        answer = transcript.answer
        if len(answer) > PLAIN_ANSWER_CHARS:
            # Not the answer again: it would add its size to what is sent. Front ends that
            # cannot show Markdown are rare; the conversation keeps the text.
            size = f"{len(answer):,} characters"
            plain = f"[{model_id(transcript.model)}: a Markdown answer of {size}]"
        else:
            plain = clip_plain(
                answer if answer and not transcript.partial else markdown, self.max_chars
            )
        self._tail.update(_bundle(markdown, plain), raw=True)
        if not self._tail_is_sealed_id:
            self._update_display({}, raw=True, display_id=self._sealed_id)
