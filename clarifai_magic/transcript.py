"""What a turn looks like while it runs: the data the engine fills and the views draw.

:class:`Transcript` holds every round (its streamed text, reasoning, tool calls and their
outcomes), the status and what the user should be told; a :class:`TurnView` draws it. Views never
build messages or talk to the store: they only read this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from .stream import StreamAccumulator, ToolCall, Usage

if TYPE_CHECKING:
    from .tools import ToolOutcome

TurnStatus = Literal["streaming", "running tools", "done", "interrupted", "error", "incomplete"]


@dataclass
class ToolActivity:
    call: ToolCall
    outcome: ToolOutcome | None = None
    started: bool = False  # handed to the tool runner (so a cancel may not have stopped it)
    is_async: bool = False  # an async tool is cancelled for sure; a sync one only told


@dataclass
class Round:
    stream: StreamAccumulator = field(default_factory=StreamAccumulator)
    tools: list[ToolActivity] = field(default_factory=list)
    saved: bool = False  # its messages (tool calls and results) are in the store


@dataclass
class Transcript:
    """Everything a view needs to draw a turn, as it happens."""

    model: str
    rounds: list[Round] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    status: TurnStatus = "streaming"
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    waiting: str | None = None  # e.g. "rate-limited, retrying in 4 s", while it lasts

    @property
    def answer(self) -> str:
        """The final answer: the text of the last round."""
        return self.rounds[-1].stream.text if self.rounds else ""

    @property
    def usage(self) -> Usage:
        total = Usage()
        for round_ in self.rounds:
            usage = round_.stream.usage
            if usage is None:
                continue
            if usage.prompt_tokens is not None:
                total.prompt_tokens = (total.prompt_tokens or 0) + usage.prompt_tokens
            if usage.completion_tokens is not None:
                total.completion_tokens = (total.completion_tokens or 0) + usage.completion_tokens
        return total

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def partial(self) -> bool:
        return self.status in ("interrupted", "error", "incomplete")


class TurnView(Protocol):
    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        """Draw the transcript if the view's budget allows; ``force`` for a change of phase
        (tools start or finish), ``final`` for the last, unconditional draw."""
