"""Append-only streaming of one answer into the chat panel's log.

:class:`~clarifai_magic.sealing.Sealer` decides what to send, as for the cell; each frame goes to
the answer's message in the :class:`~clarifai_magic.chat_log.ChatLog` as one small message: the
blocks sealed since the last frame (appended in the page for good) and the open tail (replaced).
So what goes over the wire grows with the answer's size, not with how long it streams (a
whole-answer redraw, 20 times a second, re-sends a slow answer hundreds of times). At the end the
tail is drawn final and the sealed blocks stay, unless a block was sealed in two (a seam) or the
answer is clipped: then the whole answer replaces them, as the cell's final frame does.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chat_log import ChatLog
from .sealing import Sealer
from .transcript import Transcript


@dataclass
class StreamStats:
    """What the view sent, for tests: how many seals, and the Markdown (UTF-8 bytes)."""

    seals: int = 0
    bytes_sent: int = 0


class AppendView:
    """Draws a turn into a new message of ``log``, append-only, driven by one thread at a time
    (the panel's worker): the log's messages are comm messages, sent from whichever thread, with
    no "current cell" involved."""

    def __init__(self, log: ChatLog, *, label: str = "", max_chars: int | None = None) -> None:
        self.log = log
        # A frame, sealed blocks and tail together, is one message.
        self.sealer = Sealer(label=label, max_chars=max_chars, seal_messages=0)
        self.stats = StreamStats()
        waiting = self.sealer.waiting()
        self.entry = log.add("assistant", waiting)
        self._count(waiting)

    def _count(self, *texts: str | None) -> None:
        self.stats.bytes_sent += sum(len(text.encode()) for text in texts if text)

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if final:
            rest = self.sealer.final_tail(transcript)
            if rest is not None:
                self.log.frame(self.entry, None, rest)
            else:  # nothing sealed, seamed or clipped: the whole answer, alone
                rest = self.sealer.whole(transcript)
                self.log.whole(self.entry, rest)
            self._count(rest)
            return
        frame = self.sealer.step(transcript, force=force)
        if frame is None:
            return
        self.log.frame(self.entry, frame.sealed, frame.tail)
        self.stats.seals += frame.sealed is not None
        self._count(frame.sealed, frame.tail)

    def text(self) -> str:
        """The Markdown of the answer's message (for tests)."""
        return self.log.entries[self.entry].markdown()
