"""Which notebook a kernel serves, and which part of a conversation to send to the model.

Pure helpers: :func:`notebook_key` names the notebook whose conversations the store keeps (when
something says which notebook this is), :func:`fit` and :func:`trim` pick the newest turns that
fit a context budget (trimming only what is sent, never what is stored; :func:`history_budget`
is the default budget), :func:`repair_tool_calls` drops tool calls and results that lost their
partner (an interrupted turn), and :func:`approx_tokens` estimates a message's size at ~4 chars
a token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# History sent with a question when the user set no budget: enough for a few dozen exchanges
# of a notebook, little enough that a long notebook doesn't pay for its whole past every time.
DEFAULT_MAX_HISTORY_TOKENS = 8_000
CHARS_PER_TOKEN = 4
# Role, separators and name that every message costs on top of its text.
MESSAGE_OVERHEAD_TOKENS = 4
# Counting a base64 image's characters would overestimate it a hundredfold; providers bill an
# image as a few hundred tokens (OpenAI: 765 for a 1024x1024 picture at high detail).
IMAGE_TOKENS = 765
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_SYSTEM_ROLES = frozenset({"system", "developer"})


def notebook_key(
    user_ns: Mapping[str, Any], environ: Mapping[str, str], cwd: str | None = None
) -> str | None:
    """Name the notebook this kernel runs, so its conversations outlive kernel restarts.

    In order: VS Code's ``__vsc_ipynb_file__`` (an absolute path); ipykernel's ``__session__``,
    which is Jupyter Server's ``JPY_SESSION_NAME``, the notebook's path relative to the server
    root, kept as given; the ``JPY_SESSION_NAME`` environment variable itself (set by Jupyter
    Server, or by the caller of nbclient/papermill). ``None`` when none of them says: a script,
    terminal IPython, or a notebook run by nbclient/papermill without ``JPY_SESSION_NAME``. The
    working directory is no answer (``cwd`` is ignored, kept for older callers): every notebook
    of a folder would share one conversation. The session keeps such a kernel's conversations
    to itself unless the user names the notebook (``Session.notebook_key``).

    A renamed or moved notebook gets a fresh key, so it starts with no conversations; the old
    ones stay in the store under the old key (listed by ``Store.notebooks()``) and can be copied
    over with ``Store.fork(old_conversation, name, notebook_key=new_key)``. The same notebook
    opened in VS Code and in Jupyter also has two keys (absolute vs. server-relative path).
    """
    for value in (
        user_ns.get("__vsc_ipynb_file__"),
        user_ns.get("__session__"),
        environ.get("JPY_SESSION_NAME"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def history_budget(setting: int | None, context_window: int | None = None) -> int | None:
    """The token budget for history sent with a question; ``None``: no limit.

    ``setting`` is the user's ``max_history_tokens``: a positive number is the budget, ``0`` (or
    less) means no limit, and ``None`` the default, :data:`DEFAULT_MAX_HISTORY_TOKENS`, or a
    quarter of the model's context window when that is known and larger.
    """
    if setting is not None:
        return setting if setting > 0 else None
    if context_window:
        return max(DEFAULT_MAX_HISTORY_TOKENS, context_window // 4)
    return DEFAULT_MAX_HISTORY_TOKENS


def approx_tokens(message: Mapping[str, Any]) -> int:
    """Estimate how many tokens a chat message takes, at ~4 characters a token."""
    chars = 0
    images = 0
    content = message.get("content")
    if isinstance(content, str):
        chars += len(content)
    elif isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                chars += len(str(part.get("text", "")))
            elif kind in _IMAGE_PARTS:
                images += 1
            else:
                chars += len(json.dumps(part, default=str))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    chars += len(str(message.get("name", "")))
    return MESSAGE_OVERHEAD_TOKENS + -(-chars // CHARS_PER_TOKEN) + images * IMAGE_TOKENS


def repair_tool_calls(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Drop what an interrupted turn left unpaired, which the API would reject.

    The API requires every assistant tool call to be answered by a ``tool`` message right after
    it, and every ``tool`` message to answer such a call. Calls without a result are removed from
    their assistant message (the message itself goes if nothing is left of it); results without
    a call are removed. Inputs are not modified.
    """
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        if message.get("role") == "tool":
            continue  # not right after a call block: an orphan
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            out.append(dict(message))
            continue
        results: list[dict[str, Any]] = []
        while i < len(messages) and messages[i].get("role") == "tool":
            results.append(dict(messages[i]))
            i += 1
        call_ids = {call.get("id") for call in calls}
        results = [r for r in results if r.get("tool_call_id") in call_ids]
        answered = {r.get("tool_call_id") for r in results}
        kept_calls = [call for call in calls if call.get("id") in answered]
        assistant = dict(message)
        if kept_calls:
            assistant["tool_calls"] = kept_calls
        else:
            del assistant["tool_calls"]
            if not assistant.get("content"):
                continue
        out.append(assistant)
        out.extend(results)
    return out


@dataclass(frozen=True)
class Fitted:
    """What :func:`fit` chose to send, and how much of the history that is."""

    messages: list[dict[str, Any]]
    history_sent: int  # messages before the newest turn that are sent (system ones not counted)
    history_total: int  # such messages there were (after repair)

    @property
    def trimmed(self) -> bool:
        return self.history_sent < self.history_total


def trim(
    messages: Sequence[Mapping[str, Any]],
    *,
    max_messages: int | None = None,
    max_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """The newest part of a conversation that fits the budget, ready to send (see :func:`fit`)."""
    return fit(messages, max_messages=max_messages, max_tokens=max_tokens).messages


def fit(
    messages: Sequence[Mapping[str, Any]],
    *,
    max_messages: int | None = None,
    max_tokens: int | None = None,
) -> Fitted:
    """The newest part of a conversation that fits the budget, ready to send.

    System (and developer) messages always come first and are always kept; they count against
    ``max_tokens`` but not ``max_messages``. The rest is cut into turns, each a user message and
    everything after it up to the next one. The newest turn (the prompt being answered) is
    always sent, even over budget; older turns are added newest first while both budgets hold.
    Turns are kept or dropped whole, so a cut history starts with a user message and an
    assistant's tool calls are never separated from their results. ``None`` means no limit.
    Unpaired tool calls and results are removed first (see :func:`repair_tool_calls`).
    """
    repaired = repair_tool_calls(messages)
    system = [m for m in repaired if m.get("role") in _SYSTEM_ROLES]
    turns = _turns([m for m in repaired if m.get("role") not in _SYSTEM_ROLES])
    if not turns:
        return Fitted(system, 0, 0)
    message_limit = math.inf if max_messages is None else max_messages
    token_limit = math.inf if max_tokens is None else max_tokens
    kept = [turns[-1]]
    sent, tokens = len(turns[-1]), _tokens(system + turns[-1])
    for turn in reversed(turns[:-1]):
        sent, tokens = sent + len(turn), tokens + _tokens(turn)
        if sent > message_limit or tokens > token_limit:
            break
        kept.append(turn)
    history = sum(len(turn) for turn in turns[:-1])
    sent = sum(len(turn) for turn in kept[1:])
    return Fitted(system + [m for turn in reversed(kept) for m in turn], sent, history)


def _tokens(messages: list[dict[str, Any]]) -> int:
    return sum(approx_tokens(m) for m in messages)


def _turns(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split at each user message (what comes before the first one is a turn of its own)."""
    turns: list[list[dict[str, Any]]] = []
    for message in messages:
        if message.get("role") == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns
