"""Example values for JSON schemas: what the offline server fills tool arguments and structured
answers with.

:func:`example_value` walks a schema (``$ref`` / ``$defs``, ``const``, ``enum``, ``anyOf`` /
``oneOf`` / ``allOf``, objects, arrays and tuples, string formats, lengths and patterns, number
bounds and ``multipleOf``) and returns a value the schema accepts, so ``--schema`` answers
validate and offered tools can be called with no model. Free-text strings read ``offline
example``: the value says where it came from without breaking the schema.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

EXAMPLE_TEXT = "offline example"
# Past this depth (a schema that requires itself, with no way out) the walk gives up with {}.
_MAX_DEPTH = 32
_FORMATS = {
    "date": "2025-01-31",
    "date-time": "2025-01-31T12:00:00Z",
    "time": "12:00:00",
    "duration": "P1D",
    "email": "someone@example.com",
    "idn-email": "someone@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "12345678-1234-4678-9234-567812345678",
    "binary": "ZXhhbXBsZQ==",
    "base64": "ZXhhbXBsZQ==",
}


@dataclass(frozen=True)
class _Walk:
    """Where the walk is: the root (for refs), the refs entered on this path, the depth.

    ``minimal`` is set once a ref comes round again: from there on only what the schema
    requires is filled in (null branches, empty arrays, required properties), so recursive
    schemas end.
    """

    root: Any
    seen: frozenset[str] = frozenset()
    depth: int = 0
    minimal: bool = False

    def deeper(self) -> _Walk:
        return _Walk(self.root, self.seen, self.depth + 1, self.minimal)


def example_value(schema: Any) -> Any:
    """A value that ``schema`` accepts, as plausible as a schema allows.

    Local ``$ref`` s (``#/$defs/...``, ``#/definitions/...``) are resolved; one that cannot be
    gives ``{}``. A recursive schema is filled once, then only as far as it requires.
    """
    return _example(schema, _Walk(schema))


def _example(schema: Any, walk: _Walk) -> Any:
    if not isinstance(schema, dict) or walk.depth > _MAX_DEPTH:
        return {} if isinstance(schema, dict) else None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve_ref(walk.root, ref)
        if target is None:
            return {}
        minimal = walk.minimal or ref in walk.seen
        return _example(target, _Walk(walk.root, walk.seen | {ref}, walk.depth + 1, minimal))
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key, ()) if isinstance(b, dict)]
        if branches:
            return _example(_pick_branch(branches, minimal=walk.minimal), walk.deeper())
    parts = [p for p in schema.get("allOf", ()) if isinstance(p, dict)]
    if parts:
        return _merge([_example(p, walk.deeper()) for p in parts])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(schema, walk)
    if kind == "array":
        return _array(schema, walk)
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _pick_branch(branches: list[dict[str, Any]], *, minimal: bool) -> dict[str, Any]:
    """The first non-null branch; the null one when only what is required is wanted."""
    nulls = [b for b in branches if b.get("type") == "null"]
    others = [b for b in branches if b.get("type") != "null"]
    if minimal and nulls:
        return nulls[0]
    return (others or nulls)[0]


def _merge(values: list[Any]) -> Any:
    """``allOf``: the parts' objects combined, or the first part's value."""
    if all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for value in values:
            merged.update(value)
        return merged
    return values[0]


def _object(schema: dict[str, Any], walk: _Walk) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    if not isinstance(required, list):
        # Without a list, fill every property, except on a second pass through a recursive one.
        required = [] if walk.minimal else list(properties)
    value = {
        name: _example(properties[name], walk.deeper()) for name in required if name in properties
    }
    extra = schema.get("additionalProperties")
    if not properties and isinstance(extra, dict) and not walk.minimal:
        value["key"] = _example(extra, walk.deeper())  # dict[str, X]: one entry shows the shape
    return value


def _array(schema: dict[str, Any], walk: _Walk) -> list[Any]:
    prefix = [p for p in schema.get("prefixItems", ()) if isinstance(p, dict)]
    low = _int(schema.get("minItems"), 0)
    high = _int(schema.get("maxItems"), None)
    wanted = max(low, len(prefix), 0 if walk.minimal else 1)
    if high is not None:
        wanted = min(wanted, high)
    items = schema.get("items")
    values = [_example(p, walk.deeper()) for p in prefix[:wanted]]
    while len(values) < wanted:
        if not isinstance(items, dict):
            break
        value = _example(items, walk.deeper())
        if schema.get("uniqueItems") and value in values:
            value = _vary(value, len(values))
        values.append(value)
    return values


def _vary(value: Any, index: int) -> Any:
    """A different value of the same kind, for arrays whose items must be unique."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + index
    if isinstance(value, str):
        return f"{value} {index + 1}"
    return value


def _string(schema: dict[str, Any]) -> str:
    known = _FORMATS.get(str(schema.get("format", "")))
    low = _int(schema.get("minLength"), 0)
    high = _int(schema.get("maxLength"), None)
    pattern = schema.get("pattern")
    candidates = [known] if known else []
    candidates += [EXAMPLE_TEXT, "example", "x"]
    if isinstance(pattern, str):
        generated = _matching(pattern)
        if generated is not None:
            candidates.insert(0, generated)

    def fits(text: str) -> bool:
        if len(text) < low or (high is not None and len(text) > high):
            return False
        return not isinstance(pattern, str) or _search(pattern, text)

    for candidate in candidates:
        sized = candidate[:high] if high is not None else candidate
        sized = sized + "x" * max(low - len(sized), 0)
        if fits(sized):
            return sized
    return candidates[0][:high] if high is not None else candidates[0]


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _matching(pattern: str) -> str | None:
    """A string matching a simple regular expression (literals, classes, repeats, groups)."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # Python 3.10
        import sre_parse  # type: ignore[no-redef]
    try:
        text = _generate(sre_parse.parse(pattern), sre_parse)
    except (re.error, ValueError, TypeError, RecursionError, AttributeError, IndexError):
        return None
    return text if text is not None and _search(pattern, text) else None


def _generate(parsed: Any, sre: Any) -> str | None:
    out = []
    for op, arg in parsed:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_class_member(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, body = arg
            piece = _generate(body, sre)
            if piece is None:
                return None
            out.append(piece * max(low, 1 if _high else 0))
        elif name == "SUBPATTERN":
            piece = _generate(arg[-1], sre)
            if piece is None:
                return None
            out.append(piece)
        elif name == "BRANCH":
            piece = _generate(arg[1][0], sre)
            if piece is None:
                return None
            out.append(piece)
        elif name == "AT":
            continue
        else:
            return None
    return "".join(out)


def _class_member(items: list[Any]) -> str:
    """One character a ``[...]`` class (or ``\\d``, ``\\w``) accepts."""
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            return "~" if len(items) > 1 else "a"
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY":
            category = str(arg)
            if "DIGIT" in category and "NOT" not in category:
                return "1"
            if "SPACE" in category and "NOT" not in category:
                return " "
            return "a"
    return "a"


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if above is True:  # draft 4: a flag on minimum
        above, low = low, None
    if below is True:
        below, high = high, None
    step = schema.get("multipleOf")
    bounds = [b for b in (low, high, above, below) if _is_number(b)]
    candidates: list[float] = [1, 2, 0, 10, -1] if integer else [1.5, 2.5, 1, 0, 10, -1]
    for bound in bounds:
        candidates += [bound, bound + 1, bound - 1, bound + 0.5, bound - 0.5]
        candidates += [math.ceil(bound), math.floor(bound)]
    lows = [b for b in (low, above) if _is_number(b)]
    highs = [b for b in (high, below) if _is_number(b)]
    if lows and highs:
        candidates.insert(0, (max(lows) + min(highs)) / 2)
    if _is_number(step) and step > 0:
        start = math.ceil(max(lows) / step) if lows else 1
        candidates = [step * k for k in range(start, start + 3)] + candidates

    def fits(v: float) -> bool:
        if integer and v != int(v):
            return False
        checks = [
            low is None or not _is_number(low) or v >= low,
            high is None or not _is_number(high) or v <= high,
            above is None or not _is_number(above) or v > above,
            below is None or not _is_number(below) or v < below,
        ]
        if _is_number(step) and step > 0:
            checks.append(math.isclose(v / step, round(v / step), abs_tol=1e-9))
        return all(checks)

    chosen = next((v for v in candidates if fits(v)), candidates[0])
    return int(chosen) if integer else chosen


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: Any, fallback: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


def _resolve_ref(root: Any, ref: str) -> dict[str, Any] | None:
    """The schema a local JSON pointer ref (``#/...``) names inside ``root``, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for token in filter(None, ref[1:].split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node.get(token) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
