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

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_MAX_ROUNDS = 10
FORMAT_HINTS = {
    "json": "Answer with only one JSON value: no prose before or after it, no Markdown code "
    "fences.",
    "code": "Put the code in one fenced code block (```python ... ```); any explanation goes "
    "outside it.",
}
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

    def check(self, name: str, value: Any, *, flag: str | None = None) -> Any:
        """``value`` converted to ``kind`` and within bounds, or :class:`OptionError`."""
        flag = flag or "--" + name.replace("_", "-")
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
    # Model options given with -o KEY=VALUE, where OpenAI documents a range.
    "top_p": Bound(0, 1),
    "frequency_penalty": Bound(-2, 2),
    "presence_penalty": Bound(-2, 2),
    "seed": Bound(-(2**63), 2**63 - 1, kind=int),
    "n": Bound(1, kind=int),
    "top_logprobs": Bound(0, 20, kind=int),
}
# Keys -o may not set: the magic sets them itself, or an option of its own does.
_RESERVED = {
    "model": "-m",
    "messages": "the cell",
    "stream": "the magic",
    "stream_options": "the magic",
    "tools": "--tools",
    "tool_choice": "--tools",
    "response_format": "--schema or -f json",
    "temperature": "-t",
    "max_tokens": "--max-tokens",
}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def model_options(items: Iterable[str]) -> dict[str, Any]:
    """``-o KEY=VALUE`` options as a dict: values read as JSON where they are JSON (``0.9``,
    ``true``, ``["END"]``, ``{"a": 1}``), else kept as text (``reasoning_effort=high``)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise OptionError(f"-o needs KEY=VALUE, like -o top_p=0.9; {item!r} is not that.")
        if key in _RESERVED:
            raise OptionError(f"-o {key} is not needed: use {_RESERVED[key]} instead.")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options[key] = value
    return options


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
    # How the answer should be laid out (-f json / -f code), said to the model with each request
    # as a system message that is never stored (it belongs to this request, not the conversation).
    format_hint: str | None = None
    # Other model options (-o KEY=VALUE: top_p, seed, stop, reasoning_effort, ...), passed on.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in [(f.name, getattr(self, f.name)) for f in fields(self)]:
            bound = BOUNDS.get(name)
            if bound is not None and value is not None:
                object.__setattr__(self, name, bound.check(name, value))
        checked = {
            key: BOUNDS[key].check(key, value, flag=f"-o {key}")
            if key in BOUNDS and value is not None
            else value
            for key, value in self.extra.items()
        }
        object.__setattr__(self, "extra", checked)

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
        if self.extra:
            # In the JSON body as given: the client's keyword arguments vary by version, and
            # Clarifai passes on options the client may not know yet.
            kwargs["extra_body"] = dict(self.extra)
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
