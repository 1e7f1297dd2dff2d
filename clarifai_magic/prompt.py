"""Filling ``{name}`` placeholders in a prompt from the user's namespace, without running code.

Supported: ``{name}``, attribute access ``{obj.attr}``, indexing with an integer or a quoted key
(``{In[3]}``, ``{Out[3]}``, ``{d['key']}``) and an optional format spec (``{x:.2f}``). Private and
dunder attributes are refused so a prompt can't walk into ``__globals__``. Anything that does not
resolve (unknown names, code, JSON) stays exactly as written, and so does ``{{ ... }}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MISSING = object()

_DOUBLE = r"\{\{.*?\}\}"
_FIELD = (
    r"\{(?P<expr>[A-Za-z_]\w*(?:\.[A-Za-z]\w*|\[-?\d+\]|\['[^'\]]*'\]|\[\"[^\"\]]*\"\])*)"
    r"(?::(?P<spec>[^{}]*))?\}"
)
_TOKEN = re.compile(rf"(?P<double>{_DOUBLE})|{_FIELD}", re.DOTALL)
_STEP = re.compile(
    r"\.(?P<attr>[A-Za-z]\w*)|\[(?P<index>-?\d+)\]|\[(?P<q>['\"])(?P<key>.*?)(?P=q)\]"
)


def _resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    head = re.match(r"[A-Za-z_]\w*", expr)
    assert head is not None
    value = namespace.get(head.group(), _MISSING)
    for step in _STEP.finditer(expr, head.end()):
        if value is _MISSING:
            break
        try:
            if step.group("attr"):
                value = getattr(value, step.group("attr"), _MISSING)
            elif step.group("index") is not None:
                value = value[int(step.group("index"))]
            else:
                value = value[step.group("key")]
        except (LookupError, TypeError):
            return _MISSING
    return value


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Replace the placeholders that resolve; leave everything else untouched."""

    def replace(match: re.Match[str]) -> str:
        if match.group("double"):
            return match.group(0)
        try:
            value = _resolve(match.group("expr"), namespace)
        except Exception:  # a property or __getitem__ of the user's that raises
            return match.group(0)
        if value is _MISSING:
            return match.group(0)
        spec = match.group("spec")
        try:
            return format(value, spec) if spec else str(value)
        except (ValueError, TypeError):
            return match.group(0)

    return _TOKEN.sub(replace, template)


_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<code>.*?)(?:^(?P=fence)[ \t]*$|\Z)", re.M | re.S
)


def extract_code(text: str) -> str | None:
    """The code of the first fenced block (``` or ~~~); else the text if it is valid Python.

    None when there is neither, so prose is never pasted into a cell as if it were code.
    """
    match = _FENCE.search(text)
    if match:
        return match.group("code").strip("\n")
    try:
        compile(text, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return None
    return text.strip("\n")
