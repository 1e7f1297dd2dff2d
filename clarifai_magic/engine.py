"""One turn of a conversation: request, stream, run tools, repeat; then hand back the messages.

The engine knows nothing about notebooks. It fills a :class:`Transcript` as chunks arrive and
asks its view to show it (the view decides how often to draw); it hands the messages a turn
produced to ``on_messages`` at clear points: a partial checkpoint of the answer every second
while it streams, each completed tool round, and once at the end (marked partial if the turn
was interrupted or failed). A kernel interrupt arrives as ``KeyboardInterrupt`` where the stream
is read; the engine closes the HTTP response and keeps the partial answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .client import (
    DEFAULT_MAX_RETRIES,
    ModelStreamError,
    explain_error,
    rejects_response_format,
    retry_delay,
    retry_reason,
    status_of,
)
from .config import Credentials, Redactor
from .options import Limits, RequestOptions
from .stream import StreamAccumulator, ToolCall, Usage
from .transcript import Round, ToolActivity, Transcript, TurnView

if TYPE_CHECKING:
    import openai

    from .tools import Tool, ToolRunner

# How often a streaming answer is saved as a partial checkpoint, so a killed kernel loses little.
CHECKPOINT_SECONDS = 1.0


class LimitExceeded(Exception):
    """A response passed one of the :class:`Limits`; the message is the user's paragraph."""


class StreamIncomplete(Exception):
    """The stream ended cleanly but without a finish reason: the answer may be cut short."""


@dataclass
class TurnOptions:
    """How to run a turn: the resolved model, the request's own options, the tools offered, and
    the session's settings that bound it."""

    model: str  # resolved: the full Clarifai model URL
    request: RequestOptions = field(default_factory=RequestOptions)
    tools: Mapping[str, Tool] = field(default_factory=dict)
    tool_streaming: bool = True
    max_retries: int = DEFAULT_MAX_RETRIES
    max_tool_result_chars: int | None = None  # None: the tool runner's default
    limits: Limits = field(default_factory=Limits)


MessagesCallback = Callable[[list[dict[str, Any]], bool, "Usage | None"], None]
ConfirmCallback = Callable[["Tool", dict[str, Any]], bool]


class TurnInterrupted(Exception):
    """Raised inside the stream loop when a cancel flag is set (the widget's Stop)."""


def _assistant_message(round_: Round) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": round_.stream.text or None}
    calls = round_.stream.tool_calls
    if calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _valid_json(c.arguments)},
            }
            for c in calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return message


def _finish_notices(transcript: Transcript) -> list[str]:
    """What the user should know about how a finished answer ended."""
    last = transcript.rounds[-1].stream
    if last.finish_reason == "length":
        return ["The answer was cut off at the token limit; raise --max-tokens for more."]
    if last.finish_reason == "content_filter":
        return ["The provider's content filter stopped the answer."]
    if not last.text:
        return ["The model sent no text."]
    return []


def _valid_json(arguments: str) -> str:
    """Arguments to send back: malformed JSON becomes ``{}`` (the tool result explains why),
    because upstreams that translate to other providers' formats must parse it."""
    try:
        json.loads(arguments or "{}")
    except (ValueError, RecursionError):  # RecursionError: hostile nesting
        return "{}"
    return arguments or "{}"


def _tool_messages(round_: Round) -> list[dict[str, Any]]:
    return [
        {
            "role": "tool",
            "tool_call_id": a.call.id,
            "name": a.call.name,
            "content": a.outcome.content if a.outcome else "Error: the tool did not run.",
        }
        for a in round_.tools
    ]


def run_turn(
    client: openai.OpenAI,
    messages: Sequence[dict[str, Any]],
    options: TurnOptions,
    view: TurnView,
    *,
    credentials: Credentials | None = None,
    runner: ToolRunner,
    confirm: ConfirmCallback | None = None,
    on_messages: MessagesCallback | None = None,
    cancel: threading.Event | None = None,
    redactor: Redactor | None = None,
) -> Transcript:
    """Run one turn to the end (answer, error, interrupt or max rounds) and return its transcript.

    ``messages`` is the history to send, ending with the new user message; it is not modified.
    ``redactor`` scrubs secrets from everything the turn shows and hands back (the PAT of
    ``credentials`` is always among them).
    """
    if redactor is None:
        redactor = Redactor([credentials.pat] if credentials else [])
    turn = _Turn(client, list(messages), options, view, runner, confirm, on_messages, cancel)
    return turn.run(credentials, redactor)


class _Turn:
    """The state of one running turn; :func:`run_turn` is its only user."""

    def __init__(
        self,
        client: openai.OpenAI,
        sent: list[dict[str, Any]],
        options: TurnOptions,
        view: TurnView,
        runner: ToolRunner,
        confirm: ConfirmCallback | None,
        on_messages: MessagesCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.client = client
        self.sent = sent
        self.options = options
        self.view = view
        self.runner = runner
        self.confirm = confirm
        self.save = on_messages or (lambda messages, partial, usage: None)
        self.cancel = cancel
        self.redactor = Redactor()
        self.response_format = options.request.response_format
        self.transcript = Transcript(model=options.model)
        self.view_failure: Exception | None = None
        self.save_failed = False

    def run(self, credentials: Credentials | None, redactor: Redactor) -> Transcript:
        self.redactor = redactor
        transcript = self.transcript
        if self.options.request.format_hint:
            self.sent.append({"role": "system", "content": self.options.request.format_hint})
        final: list[dict[str, Any]] = []
        try:
            final = self._rounds()
        except (KeyboardInterrupt, TurnInterrupted):
            transcript.status = "interrupted"
        except LimitExceeded as exc:
            transcript.status, transcript.error = "error", str(exc)
        except StreamIncomplete as exc:
            transcript.status, transcript.error = "incomplete", str(exc)
        except Exception as exc:
            transcript.status = "error"
            last = transcript.rounds[-1].stream if transcript.rounds else None
            started = last is not None and bool(last.text or last.reasoning or last.tool_calls)
            transcript.error = explain_error(
                exc, self.options.model, credentials, mid_stream=started
            )
            extra = self.options.request.extra
            if extra and status_of(exc) in (400, 422):
                transcript.error += (
                    f" The request carried -o {', '.join(extra)}: check that this model "
                    "accepts them (the server's words above say which)."
                )
        if transcript.error:
            transcript.error = self.redactor.redact(transcript.error)
        if transcript.partial and transcript.rounds and not transcript.rounds[-1].saved:
            last = transcript.rounds[-1].stream
            if last.text:
                # Keep what streamed, without tool calls that never got results.
                final = [{"role": "assistant", "content": self._partial_text(last)}]
        if transcript.status == "done":
            transcript.notices.extend(_finish_notices(transcript))
        transcript.ended = time.monotonic()
        if final:
            try:
                self._save(final, transcript.partial, transcript.usage)
            except KeyboardInterrupt:  # a second Stop while the store was busy
                transcript.notices.append(
                    "Stopped before the answer could be saved: it is shown here but is not "
                    "in the conversation."
                )
        self._draw(final=True)
        if self.view_failure is not None:
            raise self.view_failure  # a bug in the view: surface it, now that all is saved
        return transcript

    def _save(self, messages: list[dict[str, Any]], partial: bool, usage: Usage | None) -> None:
        """Hand messages to the store; a store that fails is reported once, never fatal."""
        if self.save_failed:
            return
        try:
            self.save(messages, partial, usage)
        except Exception as exc:
            self.save_failed = True
            self.transcript.notices.append(
                "The answer is shown here but could not be saved to the conversation: "
                + self.redactor.redact(str(exc))
            )

    def _partial_text(self, stream: StreamAccumulator) -> str:
        text, limit = stream.text, self.options.limits.max_partial_chars
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n\n[… {len(text) - limit} more characters were not stored]"

    def _rounds(self) -> list[dict[str, Any]]:
        """Stream rounds and run tools until an answer without tool calls; return its message."""
        transcript, options = self.transcript, self.options
        while True:
            round_ = Round()
            transcript.rounds.append(round_)
            transcript.status = "streaming"
            try:
                self._stream(round_)
            except Exception as exc:
                if not self._fall_back_from_response_format(exc, round_):
                    raise
                transcript.rounds.pop()
                continue
            calls = round_.stream.tool_calls
            if not calls:
                transcript.status = "done"
                return [_assistant_message(round_)]
            max_rounds = options.request.max_rounds
            if len(transcript.rounds) > max_rounds:
                # Results nobody will read: don't run them (tools may have side effects).
                rounds = f"{max_rounds} round{'s' if max_rounds > 1 else ''}"
                transcript.status = "error"
                transcript.error = (
                    f"The model still wanted to call tools after {rounds} of tool calls, so "
                    "it was stopped without running them. Raise --max-rounds if the task "
                    "needs more steps."
                )
                return []
            self._run_tools(round_, calls)

    def _fall_back_from_response_format(self, exc: Exception, round_: Round) -> bool:
        """If the model refuses ``response_format``, ask for JSON in words and say so."""
        fallback = self.options.request.response_format_fallback
        if (
            self.response_format is None
            or not fallback
            or round_.stream.text
            or not rejects_response_format(str(exc), status_of(exc))
        ):
            return False
        self.response_format = None
        self.sent.append({"role": "system", "content": fallback})
        self.transcript.notices.append(
            "This model rejected response_format; asked for JSON in the prompt instead."
        )
        return True

    def _stream(self, round_: Round) -> None:
        options = self.options
        tools = [t.schema() for t in options.tools.values()]
        stream = bool(not tools or options.tool_streaming)
        kwargs = options.request.completion_kwargs(
            model=options.model,
            messages=self.sent,
            stream=stream,
            tools=tools,
            response_format=self.response_format,
        )
        accumulator = round_.stream
        if not stream:
            accumulator.feed_completion(self._create(kwargs))
            accumulator.redact_all(self.redactor.redact)
            self._check_limits(accumulator)
            self._draw()
            return
        response = self._create(kwargs)
        checkpoint_at = time.monotonic() + CHECKPOINT_SECONDS
        redact = self.redactor.redact if self.redactor else None
        try:
            for chunk in response:
                before = accumulator.size
                accumulator.feed(chunk)
                if accumulator.error:
                    raise ModelStreamError(accumulator.error)
                if redact is not None:
                    window = accumulator.size - before + self.redactor.longest
                    accumulator.scrub(redact, window)
                self._check_limits(accumulator)
                if self.cancel is not None and self.cancel.is_set():
                    raise TurnInterrupted
                self._draw()
                if time.monotonic() >= checkpoint_at and accumulator.text:
                    checkpoint_at = time.monotonic() + CHECKPOINT_SECONDS
                    message = {"role": "assistant", "content": self._partial_text(accumulator)}
                    self._save([message], True, None)
        finally:
            response.close()
            accumulator.finish()
            accumulator.redact_all(self.redactor.redact)
        if accumulator.finish_reason is None:
            raise StreamIncomplete(
                "The connection ended before the model said it had finished (no finish "
                "reason), so the answer may be cut short. What arrived is shown and kept, "
                "marked partial; run the cell again for a complete answer."
            )

    def _check_limits(self, accumulator: StreamAccumulator) -> None:
        limits = self.options.limits
        if accumulator.size > limits.max_answer_chars:
            raise LimitExceeded(
                f"The response passed {limits.max_answer_chars:,} characters, the limit for one "
                "response, so it was stopped there; what arrived is kept, marked partial. An "
                "answer that never ends usually means a misbehaving endpoint; if you expected "
                "one this long, raise %config ClarifaiMagics.max_answer_chars."
            )
        if accumulator.call_count > limits.max_tool_calls:
            raise LimitExceeded(
                f"The model asked for more than {limits.max_tool_calls} tool calls in one "
                "response, the limit, so none of them were run and the turn stopped. Ask for "
                "fewer steps at once, or raise %config ClarifaiMagics.max_tool_calls."
            )

    def _draw(self, *, final: bool = False, force: bool = False) -> None:
        """Show the transcript; a failing view must not cost the stream or the store write."""
        if self.view_failure is not None:
            return
        if not final and not force and self._holding_secret():
            return  # the next chunk completes (and masks) it or proves it harmless
        try:
            self.view.show(self.transcript, final=final, force=force)
        except Exception as exc:
            self.view_failure = exc

    def _holding_secret(self) -> bool:
        """Does the streaming text end with what could be the start of a secret?"""
        if not self.redactor or not self.transcript.rounds:
            return False
        text, reasoning = self.transcript.rounds[-1].stream.tail(self.redactor.longest)
        return self.redactor.holds_prefix(text) or self.redactor.holds_prefix(reasoning)

    def _create(self, kwargs: dict[str, Any]) -> Any:
        """Send the request, retrying what is worth retrying and saying so while it waits."""
        attempt = 0
        while True:
            try:
                return self.client.chat.completions.create(**kwargs)
            except Exception as exc:
                delay = retry_delay(exc, attempt) if attempt < self.options.max_retries else None
                if delay is None:
                    raise
                attempt += 1
                self.transcript.waiting = (
                    f"{retry_reason(exc)}; trying again in {delay:.0f} s "
                    f"({attempt} of {self.options.max_retries})."
                )
                self._draw(force=True)
                self._sleep(delay)
                self.transcript.waiting = None

    def _sleep(self, seconds: float) -> None:
        # Short naps, so the widget's Stop (cancel) is noticed; the kernel's interrupt
        # arrives as KeyboardInterrupt during any of them.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.cancel is not None and self.cancel.is_set():
                raise TurnInterrupted
            time.sleep(min(left, 0.1))

    def _run_tools(self, round_: Round, calls: list[ToolCall]) -> None:
        self.transcript.status = "running tools"
        tools = self.options.tools
        round_.tools = [
            ToolActivity(call, is_async=call.name in tools and tools[call.name].is_async)
            for call in calls
        ]
        self._draw(force=True)

        def started(index: int) -> None:
            round_.tools[index].started = True

        outcomes = self.runner.run_calls(
            calls,
            tools,
            confirm=self.confirm,
            max_result_chars=self.options.max_tool_result_chars,
            cancel=self.cancel,
            on_start=started,
        )
        stopped = self.cancel is not None and self.cancel.is_set()
        redact = self.redactor.redact
        for activity, outcome in zip(round_.tools, outcomes, strict=True):
            if stopped and outcome.error == "cancelled":
                continue  # drawn from `started`: not run, or cancelled while it ran
            # A tool's error or result may quote a key (an exception message, an env dump).
            outcome.content = redact(outcome.content)
            outcome.error = redact(outcome.error) if outcome.error else outcome.error
            if outcome.traceback:
                outcome.traceback = redact(outcome.traceback)
            activity.outcome = outcome
        if stopped:
            raise TurnInterrupted
        new = [_assistant_message(round_), *_tool_messages(round_)]
        self.sent.extend(new)
        self._save(new, False, None)
        round_.saved = True
        self._draw(force=True)
