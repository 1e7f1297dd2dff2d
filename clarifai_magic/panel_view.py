"""Append-only streaming of one answer into the chat panel.

An answer is a box of Output widgets. Finished Markdown blocks (at a blank line outside code
fences and folded sections) are *sealed*: sent once in a widget of their own and never again.
Only the open tail is redrawn, and a byte budget keeps redraws to about ``CREDIT`` times the new
text: so what goes over the wire grows with the answer's size, not with how long it streams (a
whole-answer redraw, 20 times a second, re-sends a slow answer hundreds of times).

Splitting is safe because every piece is a slice of the turn's Markdown made by
:func:`~clarifai_magic.render.transcript_markdown` (everything untrusted already escaped), cut only
where CommonMark ends a block anyway, so each piece renders as it would inside the whole.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from .render import MAX_UPDATES_PER_SECOND, transcript_markdown
from .transcript import Transcript

# Redraws may send about this many bytes per byte of new Markdown (sealing sends it once more).
CREDIT = 2.0
# Sealed pieces are at least this long, and at least 1/SEAL_GROWTH of what is sealed already: a
# new piece costs a few hundred bytes of widget state plus the answer's list of pieces, so pieces
# grow with the answer and their number grows only with its logarithm.
MIN_SEAL_CHARS = 768
SEAL_GROWTH = 8
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown_output(markdown: str) -> tuple[dict[str, Any], ...]:
    return ({"output_type": "display_data", "data": {"text/markdown": markdown}, "metadata": {}},)


def seal_point(markdown: str, start: int = 0) -> int:
    """The last offset after ``start`` where ``markdown`` may be cut into independent pieces.

    A cut goes just after a blank line that is outside code fences and ``<details>`` sections
    and is not followed by an indented line (list continuations, indented code). ``start`` is
    assumed to be a cut point itself. Returns ``start`` when there is none.
    """
    best = start
    fence: str | None = None
    details = 0
    pos = start
    lines = markdown[start:].split("\n")
    for number, line in enumerate(lines[:-1]):  # the last line may still be growing
        end = pos + len(line) + 1
        match = _FENCE.match(line)
        if fence is not None:
            closing = match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
            if closing and not line.strip().strip(fence[0]):
                fence = None
        elif match:
            fence = match.group(1)
        else:
            details += line.count("<details>") - line.count("</details>")
            following = lines[number + 1]
            if (
                not line.strip()
                and details <= 0
                and following.strip()
                and not following[0].isspace()
                and number > 0
            ):
                best = end
        pos = end
    return best


@dataclass
class StreamStats:
    """What the view sent, for tests and benchmarks: the Markdown (UTF-8 bytes), and the state
    of each new piece widget plus the answer box's list of them, as JSON."""

    updates: int = 0
    bytes_sent: int = 0
    overhead_bytes: int = 0
    first_text_at: float | None = None


class AppendView:
    """Draws a turn into ``box`` (a VBox) append-only; safe to call from any thread.

    Setting widget traits sends comm messages from whichever thread sets them, without touching
    "the current cell", so a worker thread or a subshell may drive it.
    """

    def __init__(self, box: widgets.Box, *, label: str = "", max_chars: int | None = None) -> None:
        self.box = box
        self.label = label
        self.max_chars = max_chars
        self.layout = widgets.Layout(
            margin="0", flex="0 0 auto"
        )  # shared: one Layout model for all pieces
        self.sealed = ""  # Markdown already sent in sealed pieces
        self.drawn = ""  # what the open piece shows
        self.credit = 0.0
        self.seen = 0  # Markdown length at the last show(), to earn credit for new text
        self.next_at = 0.0
        self.stats = StreamStats()
        self.open = self._piece(label + "*Waiting for the model…*")
        self._set_children((self.open,))

    def _piece(self, markdown: str) -> widgets.Output:
        out = widgets.Output(layout=self.layout, outputs=markdown_output(markdown))
        self._count(markdown)
        state = {k: v for k, v in out.get_state().items() if k != "outputs"}
        self.stats.overhead_bytes += len(json.dumps(state, default=str)) + 60  # 60: an output
        return out

    def _set_children(self, children: tuple[widgets.Widget, ...]) -> None:
        self.box.children = children
        self.stats.overhead_bytes += len(json.dumps(self.box.get_state(["children"])))

    def _count(self, markdown: str) -> None:
        self.stats.updates += 1
        self.stats.bytes_sent += len(markdown.encode())

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        now = time.monotonic()
        if not (final or force) and now < self.next_at:
            return
        markdown = self.label + transcript_markdown(
            transcript, final=final, max_chars=self.max_chars
        )
        self.credit += CREDIT * max(0, len(markdown) - self.seen)
        self.seen = len(markdown)
        if not markdown.startswith(self.sealed):
            # An earlier piece changed (a "Thinking…" label settled, the answer was clipped):
            # draw it whole again, once.
            self._restart(markdown)
        else:
            cut = seal_point(markdown, len(self.sealed))
            least = max(MIN_SEAL_CHARS, len(self.sealed) // SEAL_GROWTH)
            due = not final and cut - len(self.sealed) >= least
            # A piece due to be sealed is drawn alone, so sealing it sends nothing again.
            target = markdown[len(self.sealed) : cut] if due else markdown[len(self.sealed) :]
            if target != self.drawn and (final or force or self.credit >= len(target)):
                self.credit = max(0.0, self.credit - len(target))
                self._draw(target)
            if due and self.drawn == target:
                self.sealed = markdown[:cut]
                self.open = self._piece("")
                self.drawn = ""
                self._set_children((*self.box.children, self.open))
        if self.stats.first_text_at is None and transcript.answer:
            self.stats.first_text_at = now
        self.next_at = now + 1 / MAX_UPDATES_PER_SECOND

    def _draw(self, tail: str) -> None:
        self.open.outputs = markdown_output(tail)
        self.drawn = tail
        self._count(tail)

    def _restart(self, markdown: str) -> None:
        self.sealed, self.drawn = "", markdown
        for child in self.box.children:
            child.close()
        self.open = self._piece(markdown)
        self._set_children((self.open,))

    def text(self) -> str:
        """The Markdown on screen, pieces joined (for tests)."""
        parts = [
            c.outputs[0]["data"]["text/markdown"]
            for c in self.box.children
            if isinstance(c, widgets.Output) and c.outputs
        ]
        return "\n\n".join(p for p in parts if p)
