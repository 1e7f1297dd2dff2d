"""What to send while a turn streams, append-only: finished blocks once, the open tail within a
byte budget. Plain Python; the cell's view and the chat panel only show what this decides.

Redrawing the whole answer at every frame sends bytes that grow with how long the answer takes,
not with its size. Here finished blocks of the answer (cut by
:func:`~clarifai_magic.safe_markdown.seal_point`: at a blank line, outside code, where a block
renders alone as it does in the whole) are *sealed*: shown once, whole, and never updated again;
only the open block below them (the *tail*) is redrawn. A long block with no such cut (a code
block, a list, a table, one long line; any text or JSON answer) is sealed in two where it still
renders as what it is (:func:`~clarifai_magic.safe_markdown.soft_seal_point`), leaving a *seam*
that the final frame, drawn whole, removes. Tail redraws are held to a byte budget in proportion
to the text received, and text the budget has held back for a second is sealed; so display
bytes ÷ answer bytes stays under 3 past the first few hundred characters (a short answer also
pays for the waiting line and the footer), at most 20 frames a second, the first text is drawn
at once and a slow answer shows each line within about a second.

Every piece is made by :func:`segment_markdown` from the turn (untrusted text escaped by
:func:`~clarifai_magic.safe_markdown.safe_markdown`, each sealed block and the tail as a whole),
and what is sealed stays within the display's size limit (past it the final frame is the whole,
clipped with a notice).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .options import DEFAULT_MAX_DISPLAY_CHARS
from .render import (
    MAX_UPDATES_PER_SECOND,
    TOOLS_SPACER,
    WAITING,
    TextBudget,
    answer_markdown,
    reasoning_markdown,
    status_markdown,
    tool_markdown,
    transcript_markdown,
)
from .safe_markdown import seal_point, soft_seal_point
from .transcript import Transcript

# Seal once this much is sealable, or an eighth of what is sealed already: a long answer uses a
# few dozen pieces, not thousands, while the tail, redrawn, stays small. The first blocks seal
# early: until then the tail is all the answer, and redrawing it soon outruns the byte budget.
SEAL_MIN_CHARS = 80
SEAL_GROWTH = 8
# Tail redraws may send this many characters per character received, plus a start-up allowance
# (the first frames of a short answer); sealed blocks (1x) and the final frame (1x) come on top.
# So a tail of n characters is redrawn after about n / TAIL_RATIO more characters have come,
# unless it is sealed first.
TAIL_RATIO = 0.45
TAIL_SLACK = 250
# What a frame costs on the wire besides its Markdown (the message around it), counted with the
# redraws so that many small frames are not free.
FRAME_CHARS = 60
# An open block this long (a long code block or list, a paragraph of many lines) is sealed at a
# line end, with a seam the final frame removes: else it would be redrawn only every time it
# grew by half again, and text could stall for seconds at a model's speed.
SOFT_SEAL_CHARS = 400
# Text the byte budget holds back this long is sealed instead, as far as its last line end: sealed
# text is sent once whatever happens, so a slow answer shows each line within about this time.
STALE_SECONDS = 1.0
REOPEN_PAYBACK = 4
END_MESSAGES = 2
TOO_LONG_WHILE_STREAMING = "*Still streaming: too long to show here until it ends…*"


@dataclass(frozen=True)
class Mark:
    """A place in a turn: round ``round``, before its reasoning (``offset`` -1) or after
    ``offset`` characters of its answer text; ``reopen``, the line that reopens the code block
    a cut there fell in, to go before the text that follows."""

    round: int
    offset: int
    reopen: str = ""


START = Mark(0, -1)


@dataclass(frozen=True)
class Frame:
    """What to send now: ``sealed``, blocks finished since the last seal, to show for good where
    the tail was (the tail then moves below them); ``tail``, the open part to (re)draw."""

    sealed: str | None = None
    tail: str | None = None


def segment_markdown(
    transcript: Transcript,
    start: Mark,
    end: Mark | None,
    fmt: str,
    thought: dict[int, float],
    *,
    final: bool = False,
) -> list[str]:
    """The Markdown parts of the turn from ``start`` to ``end`` (``None``: all that has come),
    drawn as :func:`~clarifai_magic.render.transcript_markdown` draws them."""
    parts: list[str] = []
    budget = TextBudget(None)
    last = len(transcript.rounds) - 1 if end is None else end.round
    for number in range(start.round, last + 1):
        round_ = transcript.rounds[number]
        lo = start.offset if number == start.round else -1
        if lo < 0:
            thinking = reasoning_markdown(round_, final, budget, thought.get(number))
            if thinking:
                parts.append(thinking)
            lo = 0
        whole_round = end is None or number < end.round
        text = round_.stream.text[lo:] if whole_round else round_.stream.text[lo : end.offset]
        if number == start.round and start.offset >= 0:
            text = start.reopen + text
        if text:
            parts.append(answer_markdown(text, fmt))
        if whole_round and round_.tools:
            parts.extend(tool_markdown(activity, final, budget) for activity in round_.tools)
            parts.append(TOOLS_SPACER)
    return parts


def received_size(transcript: Transcript) -> int:
    """Characters of untrusted text received so far (kept count of, not joined: per chunk)."""
    return sum(round_.stream.size for round_ in transcript.rounds) + sum(
        len(activity.outcome.content)
        for round_ in transcript.rounds
        for activity in round_.tools
        if activity.outcome is not None
    )


class Sealer:
    """Decides the frames of one turn. ``seal_messages``: what a seal costs the view in
    messages, counted against the frame rate. ``label`` heads the first piece, which the view
    shows as :meth:`waiting` until the first frame."""

    def __init__(
        self,
        fmt: str = "markdown",
        *,
        max_chars: int | None = DEFAULT_MAX_DISPLAY_CHARS,
        label: str = "",
        seal_messages: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fmt = fmt
        self.max_chars = DEFAULT_MAX_DISPLAY_CHARS if max_chars is None else max_chars
        self.label = label
        self.seal_messages = seal_messages
        self.clock = clock
        # The end (the final frame, then emptying the sealed outputs) may come in the same second
        # as the last frames: room is kept for it under the limit.
        self.interval = 1 / (MAX_UPDATES_PER_SECOND - END_MESSAGES)
        self.sealed = START  # everything before this is shown for good
        self.seamed = False  # a block was sealed in two: the sealed pieces can't be final
        self._next_at = 0.0
        self._drawn_at = 0.0  # when the last frame was sent
        self._tail_sent = 0  # characters of tail frames sent: what the byte budget bounds
        self._sealed_chars = 0
        self._last_tail: str | None = self.waiting()
        # When each round's reasoning and answer began, to say how long it thought.
        self._reasoning_at: dict[int, float] = {}
        self._answer_at: dict[int, float] = {}

    def waiting(self) -> str:
        return self.label + WAITING

    def step(self, transcript: Transcript, *, force: bool = False) -> Frame | None:
        """The frame to send now, or None when it is not time for one (rate and byte budget)."""
        now = self.clock()
        first_text = self._note_times(transcript, now)
        if not (force or first_text) and now < self._next_at:
            return None
        frame = self._frame(transcript, now, urgent=force or first_text)
        messages = (self.seal_messages if frame.sealed is not None else 0) + (
            frame.tail is not None
        )
        # Even when nothing is sent (the byte budget said wait): looking costs a join of the
        # text, which per chunk would be quadratic.
        self._next_at = now + max(messages, 1) * self.interval
        return frame if messages else None

    def whole(self, transcript: Transcript) -> str:
        """The whole turn, drawn final: what stays in a saved notebook."""
        return self.label + transcript_markdown(
            transcript,
            final=True,
            fmt=self.fmt,
            max_chars=self.max_chars,
            thought=self.thought(transcript),
        )

    def final_tail(self, transcript: Transcript) -> str | None:
        """What follows the sealed blocks, drawn final; None when the sealed blocks can't stay
        (nothing sealed, a block sealed in two, the turn clipped): then show :meth:`whole`."""
        if self.sealed == START or self.seamed or received_size(transcript) > self.max_chars:
            return None
        thought = self.thought(transcript)
        parts = segment_markdown(transcript, self.sealed, None, self.fmt, thought, final=True)
        tail = "\n\n".join(parts + status_markdown(transcript, True, shown=True))
        # Past the limit the whole is clipped with a notice, which sealed blocks can't say.
        return None if self._sealed_chars + len(tail) > self.max_chars else tail

    def thought(self, transcript: Transcript) -> dict[int, float]:
        end = transcript.ended or self.clock()
        return {
            number: self._answer_at.get(number, end) - began
            for number, began in self._reasoning_at.items()
        }

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

    def _frame(self, transcript: Transcript, now: float, *, urgent: bool) -> Frame:
        received = received_size(transcript)
        thought = self.thought(transcript)
        sealed = None
        sealable = bool(transcript.rounds) and received <= self.max_chars
        if sealable:
            sealed = self._seal(transcript, thought)
        tail = self._tail_markdown(transcript, thought, received)
        if sealed is None:
            if tail == self._last_tail:
                return Frame()
            allowance = TAIL_RATIO * received + TAIL_SLACK - self._tail_sent
            if len(tail) + FRAME_CHARS > allowance and not urgent:
                # Later, when more text has come, bytes stay in proportion; unless it has waited
                # too long: then what has come, up to its last line end, is sealed.
                if sealable and now - self._drawn_at >= STALE_SECONDS:
                    sealed = self._seal(transcript, thought, stale=True)
                if sealed is None:
                    return Frame()
                tail = self._tail_markdown(transcript, thought, received)
        self._drawn_at = now
        self._tail_sent += len(tail) + FRAME_CHARS
        self._last_tail = tail
        return Frame(sealed, tail)

    def _seal(
        self, transcript: Transcript, thought: dict[int, float], *, stale: bool = False
    ) -> str | None:
        """The blocks finished since the last seal, if there are enough to seal now (``stale``:
        any at all, the open block cut at its last line end if need be)."""
        number = len(transcript.rounds) - 1
        text = transcript.rounds[number].stream.text
        here = self.sealed if self.sealed.round == number else Mark(number, 0)
        lo, reopen = max(here.offset, 0), here.reopen
        least = 1 if stale else max(SEAL_MIN_CHARS, self._sealed_chars // SEAL_GROWTH)
        if len(text) - lo < least:
            return None  # no cut could be far enough: spare the scans
        markdown = self.fmt == "markdown"
        # Read from the last cut as the next piece will be drawn: reopened code is code. (Text
        # and JSON pieces are each a block of their own: every cut there is a seam.)
        cut = lo + max(0, seal_point(reopen + text[lo:]) - len(reopen)) if markdown else lo
        mark, seamed = Mark(number, cut), False
        if cut - lo < least:
            # Only the open block past the last clean cut is cut in two, once it is long: a
            # clean cut that is merely not far enough yet will be soon.
            if len(text) - cut < SOFT_SEAL_CHARS and not stale:
                return None
            cut, again = (
                soft_seal_point(text, lo, reopen) if markdown else (_line_cut(text, lo), "")
            )
            # A reopened block repeats its opening (a table's header): worth it for a piece
            # several times as long.
            if cut - lo < max(least, REOPEN_PAYBACK * len(again)):
                return None
            mark, seamed = Mark(number, cut, again), True
        label = self.label if self.sealed == START else ""
        parts = segment_markdown(transcript, self.sealed, mark, self.fmt, thought)
        sealed = label + "\n\n".join(parts)
        if self._sealed_chars + len(sealed) > self.max_chars:
            return None  # the final frame clips the whole: what is sealed must stay under it
        self.sealed = mark
        self.seamed |= seamed
        self._tail_sent += len(mark.reopen)  # sent twice: counted with the redraws
        self._sealed_chars += len(sealed)
        return sealed

    def _tail_markdown(
        self, transcript: Transcript, thought: dict[int, float], received: int
    ) -> str:
        label = self.label if self.sealed == START else ""
        parts = [TOO_LONG_WHILE_STREAMING]
        if received <= self.max_chars:
            parts = segment_markdown(transcript, self.sealed, None, self.fmt, thought)
            if self._sealed_chars + sum(map(len, parts)) > self.max_chars:
                parts = [TOO_LONG_WHILE_STREAMING]
        shown = bool(parts) or self.sealed != START
        return label + "\n\n".join(parts + status_markdown(transcript, False, shown=shown))


def _line_cut(text: str, lo: int) -> int:
    """After the last line break in ``text[lo:]``, else after its last space; ``lo`` if none."""
    at = text.rfind("\n", lo)
    if at == -1:
        at = text.rfind(" ", lo)
    return lo if at == -1 else at + 1
