"""The chat panel's message log: one anywidget that gets each message, and each frame of a
streaming answer, as a small custom message, rendered in the page by ``static/chat_log.js``
with the ``marked`` renderer and ``highlight.js`` (its core and the languages notebooks use)
shipped in ``static/``: nothing is fetched at run time.

Widgets would cost each message, and each sealed block of an answer, a widget model of a few
hundred bytes, and every new child re-sends the list of all of them; at a model's speed that was
most of what the panel sent. Here only the new text travels: a message is one ``add``, a frame is
one ``frame`` (sealed Markdown appended for good, the open tail replaced), the end is a ``whole``
or a last ``frame``. Nothing is kept as widget state, so a view that starts later (a reloaded
page) says hello and gets a replay of the log, addressed to it. The kernel keeps the log
(:attr:`ChatLog.entries`) for that and for tests. Every operation is sent under one lock, in
order: the panel's worker thread streams into the log while the kernel answers a view's hello.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anywidget

from .page_script import CLIPBOARD_JS

STATIC = Path(__file__).with_name("static")


def _module() -> str:
    """The view's ES module, one file: the vendored ``marked`` (a UMD build, given a ``module``
    to fill, so nothing is left on ``window``), highlight.js (its ES build, whose one export
    becomes the value of a function, then its languages, which register with it), the page
    script's clipboard helpers and ``chat_log.js``."""
    marked = (STATIC / "marked.umd.js").read_text(encoding="utf-8")
    core, exports = re.subn(
        r"export\{(\w+) as default\};",
        r"return \1;",
        (STATIC / "highlight.core.min.js").read_text(encoding="utf-8"),
    )
    if exports != 1:
        raise RuntimeError("static/highlight.core.min.js is not highlight.js's ES core build")
    languages = (STATIC / "highlight.languages.min.js").read_text(encoding="utf-8")
    view = (STATIC / "chat_log.js").read_text(encoding="utf-8")
    return (
        "const marked = (() => {\n  const module = { exports: {} };\n"
        f"  const exports = module.exports;\n{marked}\n  return module.exports;\n}})();\n"
        f"const hljs = (() => {{\n{core}\n}})();\n{languages}\n{CLIPBOARD_JS}\n{view}"
    )


@dataclass
class LogEntry:
    """One message of the log: its kind (``user``, ``assistant``, ``error``), its sealed blocks,
    its open tail, and its code blocks as (language, code) for Copy and Insert."""

    kind: str
    sealed: list[str] = field(default_factory=list)
    tail: str = ""
    code: list[tuple[str, str]] = field(default_factory=list)

    def markdown(self) -> str:
        """The Markdown shown, blocks joined."""
        return "\n\n".join(part for part in (*self.sealed, self.tail) if part)


class ChatLog(anywidget.AnyWidget):
    """The messages of a chat panel, sent to the page as operations on them."""

    _esm = _module()
    _css = (STATIC / "chat_log.css").read_text(encoding="utf-8")

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._seq = 0
        self._ids = itertools.count()
        self.entries: dict[int, LogEntry] = {}
        self.on_msg(self._on_msg)

    def add(self, kind: str, markdown: str) -> int:
        """A new message at the bottom; returns its id."""
        with self._lock:
            number = next(self._ids)
            self.entries[number] = LogEntry(kind, tail=markdown)
            self._operate({"op": "add", "id": number, "kind": kind, "md": markdown})
        return number

    def frame(self, number: int, sealed: str | None, tail: str | None) -> None:
        """Append ``sealed`` to message ``number`` for good, and/or replace its open tail.

        Here and below, a message no longer in the log (another conversation is shown while it
        streams, and stored) is left alone.
        """
        with self._lock:
            entry = self.entries.get(number)
            if entry is None:
                return
            op: dict[str, Any] = {"op": "frame", "id": number}
            if sealed is not None:
                entry.sealed.append(sealed)
                op["sealed"] = sealed
            if tail is not None:
                entry.tail = tail
                op["tail"] = tail
            self._operate(op)

    def whole(self, number: int, markdown: str, *, kind: str | None = None) -> None:
        """Message ``number`` redrawn as ``markdown`` alone (and as ``kind``, if given)."""
        with self._lock:
            entry = self.entries.get(number)
            if entry is None:
                return
            entry.sealed, entry.tail = [], markdown
            op: dict[str, Any] = {"op": "whole", "id": number, "md": markdown}
            if kind:
                entry.kind = kind
                op["kind"] = kind
            self._operate(op)

    def code(self, number: int, blocks: list[tuple[str, str]]) -> None:
        """Copy and Insert rows under message ``number``, one per code block. The page reads the
        code from the blocks it rendered: it is not sent twice."""
        with self._lock:
            entry = self.entries.get(number)
            if entry is None:
                return
            entry.code = list(blocks)
            self._operate({"op": "code", "id": number})

    def reset(self) -> None:
        """No messages (another conversation is shown)."""
        with self._lock:
            self.entries.clear()
            self._operate({"op": "reset"})

    def _operate(self, op: dict[str, Any]) -> None:
        self._seq += 1
        self.send({**op, "seq": self._seq})

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not (isinstance(content, dict) and content.get("op") == "hello"):
            return
        to = str(content.get("nonce", ""))[:64]
        with self._lock:
            ops: list[dict[str, Any]] = []
            for number, entry in self.entries.items():
                ops.append({"op": "add", "id": number, "kind": entry.kind, "md": entry.markdown()})
                if entry.code:
                    ops.append({"op": "code", "id": number})
            self.send({"op": "replay", "to": to, "seq": self._seq, "ops": ops})
