"""Turning streamed chat-completion chunks into text, reasoning, tool calls and usage.

Pure and incremental: :class:`StreamAccumulator` is fed one chunk at a time (the objects the
``openai`` client yields, or anything with the same attributes) and keeps what they add up to,
which views read from the engine's transcript as they redraw. It copes with the shapes real
servers send: an empty first chunk, ``choices == []`` or ``choices is None``, usage on a trailing
chunk or on the finish chunk, tool calls split across chunks and interleaved by index, reasoning
as ``reasoning_content`` or as ``<think>`` tags in the content, and Clarifai runner errors that
arrive as a chunk with ``code``/``description`` fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass
class ToolCall:
    """One tool call requested by the model, arguments as the raw JSON text it sent."""

    id: str
    name: str
    arguments: str = ""
    index: int = 0


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _get(obj: Any, name: str) -> Any:
    """A field of a chunk part: a dict key, a pydantic field, or a pydantic extra field.

    Reading ``__dict__`` rather than ``getattr`` matters: the client's models raise and swallow
    an AttributeError for every absent field, which costs more than the rest of a chunk's work.
    """
    if isinstance(obj, dict):
        return obj.get(name)
    fields = getattr(obj, "__dict__", None)
    if fields is None:
        return getattr(obj, name, None)
    value = fields.get(name)
    if value is None:
        # Fields the typed model does not declare (reasoning_content, Clarifai's error keys).
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra:
            value = extra.get(name)
    return value


class _ThinkSplitter:
    """Splits ``<think>...</think>`` out of content deltas, even when a tag spans two chunks."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """Return (is_reasoning, text) pieces; holds back a possible partial tag."""
        if not self.pending and "<" not in text:
            return [(self.inside, text)]  # the common case: no tag can start here
        text = self.pending + text
        self.pending = ""
        pieces: list[tuple[bool, str]] = []
        while text:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            at = text.find(tag)
            if at >= 0:
                if at:
                    pieces.append((self.inside, text[:at]))
                text = text[at + len(tag) :]
                self.inside = not self.inside
                continue
            keep = _partial_suffix(text, tag)
            if keep:
                self.pending = text[-keep:]
                text = text[:-keep]
            if text:
                pieces.append((self.inside, text))
            break
        return pieces

    def flush(self) -> list[tuple[bool, str]]:
        pending, self.pending = self.pending, ""
        return [(self.inside, pending)] if pending else []


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class StreamAccumulator:
    """Feed chunks in; read ``text``, ``reasoning``, ``tool_calls``, ``usage`` at any time."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, ToolCall] = {}
        # Argument fragments not yet joined into their call: ``+=`` per fragment on a str
        # attribute copies the whole string each time, quadratic on a hostile stream.
        self._fragments: dict[int, list[str]] = {}
        self._think = _ThinkSplitter()
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None
        # Characters received (text, reasoning, tool-call names and arguments): what the engine
        # bounds, kept as a counter because joining the pieces per chunk would be quadratic.
        self.size = 0

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    @property
    def tool_calls(self) -> list[ToolCall]:
        for index, fragments in self._fragments.items():
            call = self._calls[index]
            call.arguments += "".join(fragments)
        self._fragments.clear()
        return [self._calls[i] for i in sorted(self._calls)]

    @property
    def call_count(self) -> int:
        return len(self._calls)

    def tail(self, chars: int) -> tuple[str, str]:
        """The last ``chars`` characters (at least) of the text and of the reasoning."""
        return _tail(self._text, chars), _tail(self._reasoning, chars)

    def scrub(self, redact: Callable[[str], str], window: int) -> None:
        """Apply ``redact`` to the last ``window`` characters of text and reasoning, in place.

        Called after each chunk with a window of the chunk's size plus the longest secret, so a
        secret split across chunks is caught when its last piece arrives.
        """
        for pieces in (self._text, self._reasoning):
            count, covered = 0, 0
            while count < len(pieces) and covered < window:
                count += 1
                covered += len(pieces[-count])
            if count:
                tail = "".join(pieces[-count:])
                clean = redact(tail)
                if clean != tail:
                    pieces[-count:] = [clean]

    def redact_all(self, redact: Callable[[str], str]) -> None:
        """Apply ``redact`` to everything received, tool calls included (once, at the end)."""
        for pieces in (self._text, self._reasoning):
            if pieces:
                pieces[:] = [redact("".join(pieces))]
        for call in self.tool_calls:
            call.arguments = redact(call.arguments)
            call.name = redact(call.name)

    def clip(self, chars: int) -> None:
        """Keep at most ``chars`` characters of text (the head), e.g. for a stored partial."""
        text = self.text
        if len(text) > chars:
            self._text[:] = [text[:chars]]

    def feed(self, chunk: Any) -> None:
        choices = _get(chunk, "choices")
        if choices is None:
            # Clarifai's runner reports failures as a bare {"code", "description", "details"}.
            description = _get(chunk, "description")
            if description or _get(chunk, "code"):
                details = _get(chunk, "details")
                self.error = f"{description or 'Model error'}" + (f": {details}" if details else "")
        for choice in choices or ():
            delta = _get(choice, "delta")
            if delta is not None:
                self._feed_delta(delta)
            reason = _get(choice, "finish_reason")
            if reason:
                self.finish_reason = reason
                self.finish()
        self._feed_usage(chunk)

    def feed_completion(self, completion: Any) -> None:
        """Feed a non-streamed ``chat.completion``: its message is read as one big delta."""
        for choice in _get(completion, "choices") or ():
            message = _get(choice, "message")
            if message is not None:
                self._feed_delta(message)
            self.finish_reason = _get(choice, "finish_reason") or self.finish_reason
        self.finish()
        self._feed_usage(completion)

    def finish(self) -> None:
        """The stream ended: release text held back in case it began a ``<think>`` tag."""
        for is_reasoning, piece in self._think.flush():
            (self._reasoning if is_reasoning else self._text).append(piece)

    def _feed_usage(self, obj: Any) -> None:
        usage = _get(obj, "usage")
        if usage is not None:
            self.usage = Usage(_get(usage, "prompt_tokens"), _get(usage, "completion_tokens"))

    def _feed_delta(self, delta: Any) -> None:
        reasoning = _get(delta, "reasoning_content") or _get(delta, "reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._reasoning.append(reasoning)
            self.size += len(reasoning)
        content = _get(delta, "content")
        if isinstance(content, str) and content:
            self.size += len(content)
            for is_reasoning, piece in self._think.feed(content):
                (self._reasoning if is_reasoning else self._text).append(piece)
        for call in _get(delta, "tool_calls") or ():
            self._feed_tool_call(call)

    def _feed_tool_call(self, delta: Any) -> None:
        index = _get(delta, "index")
        if index is None:  # a non-streamed message's calls carry no index
            index = len(self._calls)
        function = _get(delta, "function")
        name = _get(function, "name") if function is not None else None
        fragment = _get(function, "arguments") if function is not None else None
        call = self._calls.get(index)
        if call is None:
            call = ToolCall(id=_get(delta, "id") or f"call_{index}", name=name or "", index=index)
            self._calls[index] = call
        elif name and not call.name:
            call.name = name
        if isinstance(name, str):
            self.size += len(name)
        if isinstance(fragment, str) and fragment:
            self.size += len(fragment)
            self._fragments.setdefault(index, []).append(fragment)


def _tail(pieces: list[str], chars: int) -> str:
    count, covered = 0, 0
    while count < len(pieces) and covered < chars:
        count += 1
        covered += len(pieces[-count])
    return "".join(pieces[-count:]) if count else ""
