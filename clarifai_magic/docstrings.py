"""Reading docstrings: the summary and the parameter or attribute descriptions.

Google (``Args:``/``Attributes:``), NumPy (``Parameters`` over dashes) and Sphinx (``:param x:``)
styles, mixed freely. Pure text processing; :mod:`clarifai_magic.schema` turns what is found here
into schema descriptions for tools and structured answers.
"""

from __future__ import annotations

import dataclasses
import inspect
import re


@dataclasses.dataclass(frozen=True)
class Doc:
    """A docstring's first paragraph, and its parameter (or attribute) descriptions by name."""

    summary: str
    params: dict[str, str]


_GOOGLE_HEADER = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Attributes):\s*$"
)
_SECTION_HEADER = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Attributes|Returns?|Yields?|Raises|Examples?|Notes?|See Also|Warnings?|Todo|References):"
    r"\s*$"
)
_GOOGLE_ENTRY = re.compile(r"^(?P<name>\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(?P<desc>.*)$")
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_SPHINX_PARAM = re.compile(
    r"^(?P<indent>\s*):(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?"
    r"(?P<name>\*{0,2}\w+)\s*:\s*(?P<desc>.*)$"
)


def parse_docstring(doc: str | None) -> Doc:
    """The first paragraph as the summary, and the documented parameters or attributes."""
    if not doc:
        return Doc("", {})
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            if summary:
                break
            continue
        is_numpy_header = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1])
        if _SECTION_HEADER.match(line) or is_numpy_header or stripped.startswith(":"):
            break
        summary.append(stripped)
    params = {**_sphinx_params(lines), **_numpy_params(lines), **_google_params(lines)}
    return Doc(" ".join(summary), {k: v for k, v in params.items() if v})


def class_doc(cls: type) -> Doc:
    """A class's parsed docstring; empty for the one a dataclass or TypedDict is given for free."""
    doc = cls.__doc__
    if not doc or doc.startswith(f"{cls.__name__}(") or doc is dict.__doc__:
        return Doc("", {})
    return parse_docstring(doc)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_params(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if not _GOOGLE_HEADER.match(lines[i]):
            i += 1
            continue
        base = _indent(lines[i])
        entry_indent: int | None = None
        name: str | None = None
        i += 1
        while i < len(lines):
            line = lines[i]
            if line.strip():
                if _indent(line) <= base:
                    break
                if entry_indent is None:
                    entry_indent = _indent(line)
                if _indent(line) <= entry_indent:
                    match = _GOOGLE_ENTRY.match(line.strip())
                    name = match["name"].lstrip("*") if match else None
                    if name:
                        out[name] = match["desc"].strip()  # type: ignore[index]
                elif name:
                    out[name] = f"{out[name]} {line.strip()}".strip()
            i += 1
    return out


def _numpy_params(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(len(lines) - 1):
        if lines[i].strip() not in ("Parameters", "Other Parameters"):
            continue
        if not _UNDERLINE.match(lines[i + 1]):
            continue
        base = _indent(lines[i])
        names: list[str] = []
        for j in range(i + 2, len(lines)):
            line = lines[j]
            if not line.strip():
                continue
            if (j + 1 < len(lines) and _UNDERLINE.match(lines[j + 1])) or _indent(line) < base:
                break  # the next section
            if _indent(line) == base:
                head = line.split(":", 1)[0]
                names = [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
                for n in names:
                    out.setdefault(n, "")
            else:
                for n in names:
                    out[n] = f"{out[n]} {line.strip()}".strip()
    return out


def _sphinx_params(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    name: str | None = None
    base = 0
    for line in lines:
        match = _SPHINX_PARAM.match(line)
        if match:
            name = match["name"].lstrip("*")
            out[name] = match["desc"].strip()
            base = len(match["indent"])
        elif name and line.strip() and _indent(line) > base and not line.strip().startswith(":"):
            out[name] = f"{out[name]} {line.strip()}"
        else:
            name = None
    return out
