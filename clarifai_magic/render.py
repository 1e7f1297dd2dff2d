"""Views of a turn: a live Markdown display in a notebook cell, or plain text in a terminal.

Both are drawn from the engine's :class:`~clarifai_magic.engine.Transcript` under a frame budget:
``show()`` is called for every chunk, but a view draws only when its budget allows, plus once
unconditionally at the end so that a saved notebook holds the whole final answer. The cell view's
budget is at most 20 updates a second and, for long answers, at most about
``BYTES_PER_SECOND`` of display traffic, because every update resends the whole Markdown (ipykernel
does no throttling and JupyterLab re-renders the whole cell).

Model text, reasoning, tool calls and results and server messages are untrusted: JupyterLab renders
the Markdown of an output the user ran (or a saved notebook whose signature holds) without
sanitising it, so raw HTML in it would run. Every such piece goes through :func:`safe_markdown`.
"""

from __future__ import annotations

import html
import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .models import model_id
from .options import DEFAULT_MAX_DISPLAY_CHARS
from .safe_markdown import (
    code_span,
    escape_inline,
    fenced,
    one_line,
    quote_untrusted,
    safe_markdown,
)
from .transcript import Round, ToolActivity, Transcript

MAX_UPDATES_PER_SECOND = 20
BYTES_PER_SECOND = 32_000
MAX_INTERVAL = 1.0
TERMINAL_INTERVAL = 0.03
PREVIEW_CHARS = 600
# Past this, tool arguments are shown as sent rather than parsed and pretty-printed on every frame.
PARSE_ARGUMENTS_CHARS = 20_000
SHOWN_ARGUMENTS_CHARS = 4_000
SHOWN_RESULT_CHARS = 2_000


class FrameBudget:
    """Says whether enough time has passed since the last draw to draw again."""

    def __init__(self, min_interval: float, bytes_per_second: float | None = None) -> None:
        self.min_interval = min_interval
        self.bytes_per_second = bytes_per_second
        self.next_at = 0.0

    def allows(self, *, final: bool = False, force: bool = False) -> bool:
        """Draw now? Always for the final frame and a forced one, else when the time has come."""
        return final or force or time.monotonic() >= self.next_at

    def drew(self, size: int = 0) -> None:
        interval = self.min_interval
        if self.bytes_per_second:
            interval = min(max(interval, size / self.bytes_per_second), MAX_INTERVAL)
        self.next_at = time.monotonic() + interval


# -- fitting a display under its size limit -------------------------------------------------------
class _Budget:
    """How many characters of untrusted text a display may still take (``None``: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.clipped = False

    @property
    def spent(self) -> bool:
        return self.left == 0

    def take(self, text: str) -> str:
        """``text``, or its head up to what is left (cut at a line break where one is near)."""
        if self.left is None or len(text) <= self.left:
            if self.left is not None:
                self.left -= len(text)
            return text
        cut = text.rfind("\n", 0, self.left)
        if cut < self.left // 2:
            cut = self.left
        self.left, self.clipped = 0, True
        return text[:cut]


def too_long_notice(size: int) -> str:
    return (
        f"> ℹ️ This answer is too long to show in full here ({size:,} characters; the limit is "
        "`%config ClarifaiMagics.max_display_chars`). The whole answer is kept in the "
        "conversation (`%clarifai history`) and in `--out`."
    )


def _fit(build: Callable[[_Budget, str | None], str], size: int, max_chars: int | None) -> str:
    """Markdown from ``build`` whole if it fits in ``max_chars``, else its head and the notice.

    ``build(budget, notice)`` takes untrusted text through ``budget`` and puts ``notice`` (when
    given) after it. Escaping can lengthen text, so the budget shrinks until the result fits.
    """
    budget = _Budget(max_chars)
    markdown = build(budget, None)
    if max_chars is None or (not budget.clipped and len(markdown) <= max_chars):
        return markdown
    notice = too_long_notice(size)
    limit = max(0, max_chars - len(notice))
    for _ in range(8):
        markdown = build(_Budget(limit), notice)
        if len(markdown) <= max_chars or limit == 0:
            break
        limit = max(0, min(limit - 1, limit * max_chars // len(markdown) - 256))
    return markdown


def safe_markdown_within(text: str, max_chars: int | None) -> str:
    """:func:`safe_markdown` of ``text``, clipped with a notice past ``max_chars``."""

    def build(budget: _Budget, notice: str | None) -> str:
        shown = safe_markdown(budget.take(text))
        return f"{shown}\n\n{notice}" if notice else shown

    return _fit(build, len(text), max_chars)


def clip_plain(text: str, max_chars: int) -> str:
    """A ``text/plain`` copy within ``max_chars``."""
    if len(text) <= max_chars:
        return text
    note = (
        f"\n\n[… {len(text):,} characters in all: too long to show here "
        "(%config ClarifaiMagics.max_display_chars); the whole answer is kept in the conversation]"
    )
    return text[: max(0, max_chars - len(note))] + note


# -- a turn as Markdown ---------------------------------------------------------------------------
def footer(transcript: Transcript) -> str:
    usage = transcript.usage
    parts = [model_id(transcript.model)]
    if usage.prompt_tokens is not None or usage.completion_tokens is not None:
        parts.append(f"{usage.prompt_tokens or 0} in / {usage.completion_tokens or 0} out tokens")
    else:
        parts.append("token usage not reported")
    elapsed = transcript.elapsed
    parts.append(f"{elapsed:.1f} s")
    if usage.completion_tokens and elapsed > 0:
        parts.append(f"{usage.completion_tokens / elapsed:.0f} tok/s")
    if len(transcript.rounds) > 1:
        parts.append(f"{len(transcript.rounds)} rounds")
    return " · ".join(parts)


def _args_preview(arguments: str) -> str:
    if len(arguments) > PARSE_ARGUMENTS_CHARS:
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (ValueError, RecursionError):  # RecursionError: hostile nesting
        return arguments
    try:
        if isinstance(value, dict):
            return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:
        return arguments


def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def tool_summary(activity: ToolActivity, *, turn_over: bool = False) -> str:
    """One line: ``get_weather(location="Paris") → result · 0.51 s``."""
    call, outcome = activity.call, activity.outcome
    head = one_line(f"{_clip(call.name, 120)}({_clip(_args_preview(call.arguments), 120)})")
    if outcome is None:
        if not turn_over:
            return f"{head} …"
        # getattr: transcripts made before the engine tracked these still draw.
        if not getattr(activity, "started", False):
            return f"{head} ✗ not run (the turn ended first)"
        if getattr(activity, "is_async", False):
            return f"{head} ✗ cancelled"
        return (
            f"{head} ✗ cancelled; a plain (sync) function cannot be stopped from outside and may "
            "still be finishing in the background"
        )
    if not outcome.ok:
        error = one_line(_clip(outcome.error or "failed", 120))
        return f"{head} ✗ {error} · {outcome.duration:.2f} s"
    return f"{head} → {one_line(_clip(outcome.content, 80))} · {outcome.duration:.2f} s"


def _details(summary_html: str, body: str) -> str:
    """A folded section: the summary is ours (HTML), the body Markdown already made safe."""
    return f"<details><summary>{summary_html}</summary>\n\n{body}\n\n</details>"


def _tool_markdown(activity: ToolActivity, turn_over: bool, budget: _Budget) -> str:
    call, outcome = activity.call, activity.outcome
    icon = "🔧" if outcome is None or outcome.ok else "⚠️"
    arguments = call.arguments
    if len(arguments) <= PARSE_ARGUMENTS_CHARS:
        arguments = _pretty_json(arguments)
    shown = budget.take(_clip(arguments, SHOWN_ARGUMENTS_CHARS))
    body = ["**Arguments**\n\n" + fenced(shown, "json")]
    if outcome is not None and not budget.spent:
        body.append("**Result**\n\n" + fenced(budget.take(_clip(outcome.content, 2000))))
        if outcome.traceback and not budget.spent:
            body.append("**Traceback**\n\n" + fenced(budget.take(outcome.traceback.rstrip())))
    summary = html.escape(tool_summary(activity, turn_over=turn_over))
    return _details(f"{icon} {summary}", "\n\n".join(body))


def _pretty_json(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return arguments


def _round_markdown(round_: Round, final: bool, fmt: str, budget: _Budget) -> list[str]:
    parts: list[str] = []
    stream = round_.stream
    reasoning = stream.reasoning.strip()
    if reasoning:
        label = "Thinking" if final or stream.text or stream.tool_calls else "Thinking…"
        parts.append(_details(label, safe_markdown(budget.take(reasoning))))
    text = stream.text
    if text and not budget.spent:
        text = budget.take(text)
        if fmt == "text":
            parts.append(f"<pre>{html.escape(text)}</pre>")
        elif fmt == "json":
            parts.append(fenced(text, "json"))
        else:
            # Fences are closed even in the final frame, so notices and the footer never land
            # in code.
            parts.append(safe_markdown(text))
    for activity in round_.tools:
        if budget.spent:
            break
        parts.append(_tool_markdown(activity, final, budget))
    return parts


def _untrusted_size(transcript: Transcript) -> int:
    size = 0
    for round_ in transcript.rounds:
        size += len(round_.stream.text) + len(round_.stream.reasoning)
        for activity in round_.tools:
            size += len(activity.call.arguments)
            if activity.outcome is not None:
                size += len(activity.outcome.content)
    return size


def transcript_markdown(
    transcript: Transcript, *, final: bool, fmt: str = "markdown", max_chars: int | None = None
) -> str:
    """The turn as Markdown; past ``max_chars`` its head and a notice that it was clipped."""

    def build(budget: _Budget, clipped_notice: str | None) -> str:
        parts: list[str] = []
        for round_ in transcript.rounds:
            if budget.spent:
                break
            parts.extend(_round_markdown(round_, final, fmt, budget))
        if clipped_notice:
            parts.append(clipped_notice)
        parts.extend(_status_markdown(transcript, final, bool(parts)))
        return "\n\n".join(parts)

    return _fit(build, _untrusted_size(transcript), max_chars)


def _status_markdown(transcript: Transcript, final: bool, shown: bool) -> list[str]:
    parts: list[str] = []
    if transcript.status == "running tools":
        parts.append("*Running tools…*")
    if transcript.waiting:
        parts.append(quote_untrusted("⏳ ", transcript.waiting))
    for notice in transcript.notices:
        parts.append(quote_untrusted("ℹ️ ", notice))
    if transcript.status == "interrupted":
        parts.append("> ⏹ **Interrupted.** The partial answer above is kept.")
    if transcript.status == "incomplete":
        why = transcript.error or "The stream ended without saying it was finished."
        parts.append(quote_untrusted("⚠️ **Incomplete.** ", why))
    elif transcript.error:
        parts.append(quote_untrusted("⚠️ **Error.** ", transcript.error))
    if not parts and not shown and not final:
        parts.append("*Waiting for the model…*")
    if final or transcript.status != "streaming" or transcript.usage.completion_tokens:
        parts.append(f"<sub>{html.escape(one_line(footer(transcript)))}</sub>")
    return parts


class CellView:
    """One display per answer in a notebook cell, updated under a frame budget."""

    def __init__(
        self, fmt: str = "markdown", *, max_chars: int = DEFAULT_MAX_DISPLAY_CHARS
    ) -> None:
        from IPython.display import display

        self.fmt = fmt
        self.max_chars = max_chars
        self.budget = FrameBudget(1 / MAX_UPDATES_PER_SECOND, BYTES_PER_SECOND)
        self._handle = display(
            self._bundle_text("*Waiting for the model…*", ""), raw=True, display_id=True
        )

    @staticmethod
    def _bundle_text(markdown: str, plain: str) -> dict[str, Any]:
        return {"text/markdown": markdown, "text/plain": plain or markdown}

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if not self.budget.allows(final=final, force=force):
            return
        markdown = transcript_markdown(
            transcript, final=final, fmt=self.fmt, max_chars=self.max_chars
        )
        # Frontends show text/plain only where Markdown can't render; while streaming a short
        # stand-in halves the bytes sent, and the final frame carries the whole answer.
        if not final:
            plain = "(streaming…)"
        else:
            plain = transcript.answer if not transcript.partial else markdown
            plain = clip_plain(plain, self.max_chars)
        self._handle.update(self._bundle_text(markdown, plain), raw=True)
        self.budget.drew(len(markdown))


class TerminalView:
    """Plain text for a terminal IPython: text is printed as it streams."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.budget = FrameBudget(TERMINAL_INTERVAL)
        self._printed: dict[tuple[int, str], int] = {}
        self._tools_shown: set[tuple[int, int, bool]] = set()
        self._waiting_shown: str | None = None

    def _write_new(self, key: tuple[int, str], text: str, prefix: str = "") -> None:
        done = self._printed.get(key, 0)
        if len(text) > done:
            if done == 0 and prefix:
                self.out.write(prefix)
            self.out.write(text[done:])
            self._printed[key] = len(text)

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if not self.budget.allows(final=final, force=force):
            return
        if transcript.waiting and transcript.waiting != self._waiting_shown:
            self.out.write(f"[waiting] {transcript.waiting}\n")
        self._waiting_shown = transcript.waiting
        for number, round_ in enumerate(transcript.rounds):
            self._write_new((number, "reasoning"), round_.stream.reasoning, "[thinking] ")
            if (
                round_.stream.reasoning
                and round_.stream.text
                and (number, "text") not in self._printed
            ):
                self.out.write("\n[answer]\n")
            self._write_new((number, "text"), round_.stream.text)
            for index, activity in enumerate(round_.tools):
                key = (number, index, activity.outcome is not None)
                if key not in self._tools_shown:
                    self._tools_shown.add(key)
                    mark = "←" if activity.outcome else "→"
                    self.out.write(f"\n{mark} {tool_summary(activity, turn_over=final)}\n")
                    if activity.outcome is not None and activity.outcome.traceback:
                        self.out.write(activity.outcome.traceback.rstrip() + "\n")
        if final:
            for notice in transcript.notices:
                self.out.write(f"\n[note] {notice}")
            if transcript.status == "interrupted":
                self.out.write("\n[interrupted: the partial answer above is kept]")
            if transcript.status == "incomplete":
                why = transcript.error or "The stream ended without saying it was finished."
                self.out.write(f"\n[incomplete] {why}")
            elif transcript.error:
                self.out.write(f"\n[error] {transcript.error}")
            self.out.write(f"\n({footer(transcript)})\n")
        self.out.flush()
        self.budget.drew()


def _stored_text(content: Any, budget: _Budget) -> str:
    """A stored message's content as safe Markdown: text parts escaped, other parts named."""
    if not isinstance(content, list):
        return safe_markdown(budget.take(content if isinstance(content, str) else ""))
    shown = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            shown.append(safe_markdown(budget.take(str(part.get("text", "")))))
        else:
            kind = escape_inline(one_line(str(part.get("type", "part"))))
            shown.append(f"*\\[{kind}\\]*")
    return "\n\n".join(shown)


def history_markdown(name: str, stored: list[Any], *, max_chars: int | None = None) -> str:
    """A stored conversation as Markdown: each message under its role, tool calls collapsed.

    Everything stored came from the user, the model or a tool, so all of it is escaped.
    """

    def build(budget: _Budget, notice: str | None) -> str:
        parts = [f"### Conversation {code_span(name)}"]
        if not stored:
            parts.append("*No messages yet.*")
        for item in stored:
            if budget.spent:
                break
            parts.append(_stored_markdown(item, budget))
        if notice:
            parts.append(notice)
        return "\n\n".join(parts)

    size = sum(len(str(item.message.get("content") or "")) for item in stored)
    return _fit(build, size, max_chars)


def _stored_markdown(item: Any, budget: _Budget) -> str:
    message = item.message
    role = str(message.get("role", "?"))
    content = message.get("content")
    if role == "tool":
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        tool = html.escape(one_line(str(message.get("name") or "tool")))
        return _details(f"🔧 result of {tool}", fenced(budget.take(_clip(text, 2000))))
    flag = " *(partial)*" if getattr(item, "partial", False) else ""
    if getattr(item, "hidden", False):
        flag += " *(cell deleted: not sent)*"
    parts = [f"**{escape_inline(one_line(role))}**{flag}", _stored_text(content, budget)]
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        shown = f"{function.get('name')}({_args_preview(str(function.get('arguments', '')))})"
        parts.append(f"🔧 {code_span(_clip(shown, SHOWN_ARGUMENTS_CHARS))}")
    return "\n\n".join(part for part in parts if part)
