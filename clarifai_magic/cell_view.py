"""The notebook cell's view of a turn: Markdown that streams append-only (see
:mod:`~clarifai_magic.sealing`, which decides what to send) and ends as one static Markdown output.

Each sealed block goes into an output of its own, never updated again, and a new output below
takes the tail. At the end the tail becomes the whole final Markdown and the others are emptied,
so a saved notebook holds the answer as one Markdown output (nbviewer and GitHub render it). The
sealed outputs share one display id, so emptying them all is one message however many there are.
JupyterLab, Notebook 7 and VS Code treat a new output with a known id as a new output; nbclassic
and nbclient also redraw the earlier ones with it, so there the sealed blocks repeat the latest
one while the answer streams, and the end is the same everywhere.
"""

from __future__ import annotations

import uuid
from typing import Any

from .models import model_id
from .options import DEFAULT_MAX_DISPLAY_CHARS
from .render import clip_plain
from .sealing import Sealer
from .transcript import Transcript

# Up to this size the final text/plain is the answer itself; past it, a one-line stand-in.
PLAIN_ANSWER_CHARS = 256


def _bundle(markdown: str, plain: str) -> dict[str, Any]:
    return {"text/markdown": markdown, "text/plain": plain}


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
        self.sealer = Sealer(fmt, max_chars=max_chars)
        # The first output is the first tail and, once sealed, the first sealed block: it is
        # shown under the id all sealed blocks share, which one update empties at the end.
        self._sealed_id = f"clarifai-sealed-{uuid.uuid4().hex}"
        waiting = _bundle(self.sealer.waiting(), "…")
        self._tail = self._display(waiting, raw=True, display_id=self._sealed_id)
        self._tail_is_sealed_id = True
        self.outputs = 1  # how many outputs this answer has used (all but the tail end empty)

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if final:
            self._finish(transcript)
            return
        frame = self.sealer.step(transcript, force=force)
        if frame is None:
            return
        if frame.sealed is not None:
            if self._tail_is_sealed_id:
                self._tail.update(_bundle(frame.sealed, ""), raw=True)
            else:
                # The tail's own id cannot join the shared one: empty it, show the block anew.
                self._tail.update({}, raw=True)
                self._show(_bundle(frame.sealed, ""), self._sealed_id)
            # The rest goes to a new output below, which becomes the tail.
            self._tail = self._show(_bundle(frame.tail or "", "…"), True)
            self._tail_is_sealed_id = False
        elif frame.tail is not None:
            self._tail.update(_bundle(frame.tail, "…"), raw=True)

    def _show(self, bundle: dict[str, Any], display_id: str | bool) -> Any:
        self.outputs += 1
        return self._display(bundle, raw=True, display_id=display_id)

    def _finish(self, transcript: Transcript) -> None:
        """The whole turn into the tail; the sealed outputs emptied by one message (the saved
        notebook keeps them as outputs with no data, which every front end shows as nothing)."""
        markdown = self.sealer.whole(transcript)
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
