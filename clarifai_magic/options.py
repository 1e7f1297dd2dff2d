"""What one request asks of the model, declared once with its bounds; and the bounds on what
comes back.

:class:`RequestOptions` travels unchanged from the magic line (or the panel) through the session
and the engine to the ``openai`` client's keyword arguments, so a new option is added here and
nowhere else. The bounds are data (:data:`BOUNDS`), read by the magic's option parser to reject a
bad value before anything is sent, and checked again when a record is built in code.
:class:`Limits` and the display and image limits bound what an endpoint or an input can make the
kernel hold, show or send. Kept light (no imports of the rest of the package), since
``%load_ext`` reads the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

DEFAULT_MAX_ROUNDS = 10
DEFAULT_MAX_DISPLAY_CHARS = 400_000  # of one display's Markdown; longer is clipped with a note
DEFAULT_MAX_SIDE = 1568  # pixels: larger images are downscaled before sending
DEFAULT_MAX_BYTES = 50_000_000  # an image file or bytes larger than this is refused unread
DEFAULT_MAX_PIXELS = 50_000_000  # an image with more pixels is refused before decoding


class OptionError(ValueError):
    """An option outside its bounds; the message names the option and the allowed range."""


@dataclass(frozen=True)
class Bound:
    low: float
    high: float | None = None
    kind: type = float

    def check(self, name: str, value: Any) -> Any:
        """``value`` converted to ``kind`` and within bounds, or :class:`OptionError`."""
        flag = "--" + name.replace("_", "-")
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            raise OptionError(f"{flag}: {value!r} is not a number.") from None
        if number < self.low or (self.high is not None and number > self.high):
            allowed = (
                f"between {self.low:g} and {self.high:g}"
                if self.high is not None
                else f"at least {self.low:g}"
            )
            raise OptionError(f"{flag} {value} is out of range: use a value {allowed}.")
        return number


BOUNDS: dict[str, Bound] = {
    "temperature": Bound(0, 2),
    "max_tokens": Bound(1, kind=int),
    "max_rounds": Bound(1, kind=int),
}


@dataclass(frozen=True)
class RequestOptions:
    """The model's side of a question: which model, how to sample, what shape of answer."""

    model: str | None = None  # as the user wrote it; the session resolves it
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_rounds: int = DEFAULT_MAX_ROUNDS  # rounds of tool calls in one answer
    response_format: dict[str, Any] | None = None
    # Appended as a system message if the server rejects ``response_format``.
    response_format_fallback: str | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            bound = BOUNDS.get(field.name)
            value = getattr(self, field.name)
            if bound is not None and value is not None:
                object.__setattr__(self, field.name, bound.check(field.name, value))

    def completion_kwargs(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        stream: bool,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Arguments for ``client.chat.completions.create``, leaving out what was not asked for.

        ``model`` is the resolved model URL; ``response_format`` overrides this record's (the
        engine drops it when a model rejects it).
        """
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = "auto"
        if response_format is not None:
            kwargs["response_format"] = response_format
        return kwargs


@dataclass(frozen=True)
class Limits:
    """Bounds on what an endpoint can make the kernel hold, show or store (``%config``-able).

    A hostile or broken server can stream forever or ask for thousands of tool calls; each bound
    ends the turn with a clear paragraph and keeps what arrived.
    """

    max_answer_chars: int = 1_000_000  # text + reasoning + tool calls, per response
    max_tool_calls: int = 64  # per response
    max_partial_chars: int = 200_000  # of an unfinished answer, in the store
