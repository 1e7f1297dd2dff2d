"""Views of a turn: a live Markdown display in a notebook cell, or plain text in a terminal.

Both are drawn from the engine's :class:`~clarifai_magic.engine.Transcript` under a frame budget:
``show()`` is called for every chunk, but a view draws only when its budget allows, plus once
unconditionally at the end so that a saved notebook holds the whole final answer. The cell view's
budget is at most 20 updates a second and, for long answers, at most about
``BYTES_PER_SECOND`` of display traffic, because every update resends the whole Markdown (ipykernel
does no throttling and JupyterLab re-renders the whole cell).
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from typing import IO, Any

from .engine import Round, ToolActivity, Transcript
from .models import model_id

MAX_UPDATES_PER_SECOND = 20
BYTES_PER_SECOND = 32_000
MAX_INTERVAL = 1.0
TERMINAL_INTERVAL = 0.03
PREVIEW_CHARS = 600


class FrameBudget:
    """Says whether enough time has passed since the last draw to draw again."""

    def __init__(self, min_interval: float, bytes_per_second: float | None = None) -> None:
        self.min_interval = min_interval
        self.bytes_per_second = bytes_per_second
        self.next_at = 0.0

    def allows(self, final: bool = False, force: bool = False) -> bool:
        """Draw now? Always for the final frame and a forced one, else when the time has come."""
        return final or force or time.monotonic() >= self.next_at

    def drew(self, size: int = 0) -> None:
        interval = self.min_interval
        if self.bytes_per_second:
            interval = min(max(interval, size / self.bytes_per_second), MAX_INTERVAL)
        self.next_at = time.monotonic() + interval


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


def close_open_fence(text: str) -> str:
    """Close a code fence left open mid-stream so the rest of the cell doesn't turn into code."""
    fences = sum(1 for line in text.splitlines() if line.lstrip().startswith("```"))
    return text + "\n```" if fences % 2 else text


def _args_preview(arguments: str) -> str:
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments
    if isinstance(value, dict):
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
    return json.dumps(value, ensure_ascii=False)


def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def tool_summary(activity: ToolActivity, turn_over: bool = False) -> str:
    """One line: ``get_weather(location="Paris") → result · 0.51 s``."""
    call, outcome = activity.call, activity.outcome
    head = f"{call.name}({_clip(_args_preview(call.arguments), 120)})"
    if outcome is None:
        return f"{head} ✗ not run (the turn ended first)" if turn_over else f"{head} …"
    if not outcome.ok:
        return f"{head} ✗ {_clip(outcome.error or 'failed', 120)} · {outcome.duration:.2f} s"
    return f"{head} → {_clip(outcome.content.replace(chr(10), ' '), 80)} · {outcome.duration:.2f} s"


def _tool_markdown(activity: ToolActivity, turn_over: bool) -> str:
    call, outcome = activity.call, activity.outcome
    icon = "🔧" if outcome is None or outcome.ok else "⚠️"
    body = ["**Arguments**\n\n" + fenced(_pretty_json(call.arguments), "json")]
    if outcome is not None:
        body.append("**Result**\n\n" + fenced(_clip(outcome.content, 2000)))
        if outcome.traceback:
            body.append("**Traceback**\n\n" + fenced(outcome.traceback.rstrip()))
    summary = html.escape(tool_summary(activity, turn_over))
    return (
        f"<details><summary>{icon} {summary}</summary>\n\n" + "\n\n".join(body) + "\n\n</details>"
    )


def _defuse_tags(text: str) -> str:
    """Keep the model's text from opening or closing HTML elements (a stray ``</details>``),
    while leaving ``a < b`` and code as written."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def fenced(text: str, lang: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _pretty_json(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        return arguments


def _round_markdown(round_: Round, final: bool, fmt: str) -> list[str]:
    parts: list[str] = []
    stream = round_.stream
    reasoning = stream.reasoning.strip()
    if reasoning:
        label = "Thinking" if final or stream.text or stream.tool_calls else "Thinking…"
        body = close_open_fence(_defuse_tags(reasoning))
        parts.append(f"<details><summary>{label}</summary>\n\n{body}\n\n</details>")
    text = stream.text
    if text:
        if fmt == "text":
            parts.append(f"<pre>{html.escape(text)}</pre>")
        elif fmt == "json" and "```" not in text:
            parts.append(f"```json\n{text}\n```")
        else:
            # Closed even in the final frame, so notices and the footer never land in code.
            parts.append(close_open_fence(text))
    parts.extend(_tool_markdown(a, final) for a in round_.tools)
    return parts


def transcript_markdown(transcript: Transcript, *, final: bool, fmt: str = "markdown") -> str:
    parts: list[str] = []
    for round_ in transcript.rounds:
        parts.extend(_round_markdown(round_, final, fmt))
    if transcript.status == "running tools":
        parts.append("*Running tools…*")
    if transcript.waiting:
        parts.append(f"> ⏳ {transcript.waiting}")
    for notice in transcript.notices:
        parts.append(f"> ℹ️ {notice}")
    if transcript.status == "interrupted":
        parts.append("> ⏹ **Interrupted.** The partial answer above is kept.")
    if transcript.error:
        parts.append(f"> ⚠️ **Error.** {transcript.error}")
    if not parts and not final:
        parts.append("*Waiting for the model…*")
    if final or transcript.status != "streaming" or transcript.usage.completion_tokens:
        parts.append(f"<sub>{html.escape(footer(transcript))}</sub>")
    return "\n\n".join(parts)


class CellView:
    """One display per answer in a notebook cell, updated under a frame budget."""

    def __init__(self, fmt: str = "markdown") -> None:
        from IPython.display import display

        self.fmt = fmt
        self.budget = FrameBudget(1 / MAX_UPDATES_PER_SECOND, BYTES_PER_SECOND)
        self._handle = display(
            self._bundle_text("*Waiting for the model…*", ""), raw=True, display_id=True
        )

    @staticmethod
    def _bundle_text(markdown: str, plain: str) -> dict[str, Any]:
        return {"text/markdown": markdown, "text/plain": plain or markdown}

    def show(self, transcript: Transcript, final: bool = False, force: bool = False) -> None:
        if not self.budget.allows(final, force):
            return
        markdown = transcript_markdown(transcript, final=final, fmt=self.fmt)
        # Frontends show text/plain only where Markdown can't render; while streaming a short
        # stand-in halves the bytes sent, and the final frame carries the whole answer.
        if not final:
            plain = "(streaming…)"
        else:
            plain = transcript.answer if not transcript.partial else markdown
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

    def show(self, transcript: Transcript, final: bool = False, force: bool = False) -> None:
        if not self.budget.allows(final, force):
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
                    self.out.write(f"\n{mark} {tool_summary(activity, final)}\n")
                    if activity.outcome is not None and activity.outcome.traceback:
                        self.out.write(activity.outcome.traceback.rstrip() + "\n")
        if final:
            for notice in transcript.notices:
                self.out.write(f"\n[note] {notice}")
            if transcript.status == "interrupted":
                self.out.write("\n[interrupted: the partial answer above is kept]")
            if transcript.error:
                self.out.write(f"\n[error] {transcript.error}")
            self.out.write(f"\n({footer(transcript)})\n")
        self.out.flush()
        self.budget.drew()


def history_markdown(name: str, stored: list[Any]) -> str:
    """A stored conversation as Markdown: each message under its role, tool calls collapsed."""
    parts = [f"### Conversation `{name}`"]
    if not stored:
        parts.append("*No messages yet.*")
    for item in stored:
        message = item.message
        role = message.get("role", "?")
        flag = " *(partial)*" if getattr(item, "partial", False) else ""
        content = message.get("content")
        if isinstance(content, list):
            content = "\n\n".join(
                p.get("text", "") if p.get("type") == "text" else f"*[{p.get('type', 'part')}]*"
                for p in content
            )
        if role == "tool":
            parts.append(
                f"<details><summary>🔧 result of {html.escape(message.get('name') or 'tool')}"
                f"</summary>\n\n```\n{_clip(content or '', 2000)}\n```\n\n</details>"
            )
            continue
        body = content or ""
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            body += (
                f"\n\n🔧 `{function.get('name')}({_args_preview(function.get('arguments', ''))})`"
            )
        parts.append(f"**{role}**{flag}\n\n{body}")
    return "\n\n".join(parts)
