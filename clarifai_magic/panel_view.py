"""Append-only streaming of one answer into the chat panel.

An answer is a box of Output widgets. :class:`~clarifai_magic.sealing.Sealer` decides what to
send, as for the cell: each sealed block goes into the Output widget that showed the tail, never
to be updated again, and a new widget below takes the tail. So what goes over the wire grows with
the answer's size, not with how long it streams (a whole-answer redraw, 20 times a second,
re-sends a slow answer hundreds of times). At the end the open piece is drawn final and the
sealed pieces stay, unless a block was sealed in two (a seam) or the answer is clipped: then the
whole answer replaces them in one piece, as the cell's final frame does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from .sealing import Sealer
from .transcript import Transcript


def markdown_output(markdown: str) -> tuple[dict[str, Any], ...]:
    return ({"output_type": "display_data", "data": {"text/markdown": markdown}, "metadata": {}},)


@dataclass
class StreamStats:
    """What the view sent, for tests and benchmarks: the Markdown (UTF-8 bytes), and the state
    of each new piece widget plus the answer box's list of them, as JSON."""

    updates: int = 0
    seals: int = 0
    bytes_sent: int = 0
    overhead_bytes: int = 0
    first_text_at: float | None = None


class AppendView:
    """Draws a turn into ``box`` (a VBox) append-only, driven by one thread at a time.

    Setting widget traits sends comm messages from whichever thread sets them, without touching
    "the current cell", so the panel's worker thread (or a subshell) may be that thread.
    """

    def __init__(
        self,
        box: widgets.Box,
        *,
        label: str = "",
        max_chars: int | None = None,
        layout: widgets.Layout | None = None,
    ) -> None:
        self.box = box
        # Shared: one Layout model for all pieces (and, given one, for all answers).
        self.layout = layout or widgets.Layout(margin="0", flex="0 0 auto")
        # A seal sets the piece's outputs, adds a piece and re-lists the box's children.
        self.sealer = Sealer(label=label, max_chars=max_chars, seal_messages=2)
        self.stats = StreamStats()
        self.open = self._piece(self.sealer.waiting())
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
        if self.stats.first_text_at is None and transcript.answer:
            self.stats.first_text_at = time.monotonic()
        if final:
            rest = self.sealer.final_tail(transcript)
            if rest is not None:
                self._draw(rest)
            elif len(self.box.children) == 1:  # nothing sealed: the open piece takes it all
                self._draw(self.sealer.whole(transcript))
            else:  # seamed or clipped: the sealed pieces can't stay, the whole goes in one
                self._restart(self.sealer.whole(transcript))
            return
        frame = self.sealer.step(transcript, force=force)
        if frame is None:
            return
        if frame.sealed is not None:
            self._draw(frame.sealed)  # for good: the piece is never drawn again
            self.stats.seals += 1
            self.open = self._piece(frame.tail or "")
            self._set_children((*self.box.children, self.open))
        elif frame.tail is not None:
            self._draw(frame.tail)

    def _draw(self, markdown: str) -> None:
        self.open.outputs = markdown_output(markdown)
        self._count(markdown)

    def _restart(self, markdown: str) -> None:
        # Listed first, closed after: the box never names a widget the page has dropped.
        old = self.box.children
        self.open = self._piece(markdown)
        self._set_children((self.open,))
        for child in old:
            child.close()

    def text(self) -> str:
        """The Markdown on screen, pieces joined (for tests)."""
        parts = [
            c.outputs[0]["data"]["text/markdown"]
            for c in self.box.children
            if isinstance(c, widgets.Output) and c.outputs
        ]
        return "\n\n".join(p for p in parts if p)
