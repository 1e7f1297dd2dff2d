"""Filling ``{name}`` placeholders in a prompt from the user's namespace, without running code.

Supported: ``{name}``, attribute access ``{obj.attr}``, indexing with an integer or a quoted key
(``{In[3]}``, ``{Out[3]}``, ``{d['key']}``) and an optional format spec (``{x:.2f}``). A field is
filled only when every step of it is on the allow-list below; anything else (unknown names, code,
JSON, a refused step) stays exactly as written, and so does ``{{ ... }}``. Nothing here raises
for hostile input, and no code of the user's (or of an object the prompt walks to) is run.

What a field may walk:

- **Names** in the namespace, except ``_``-prefixed ones (``_``, ``_3``, ``__builtins__``: use
  ``Out[3]`` and ``In[3]``).
- **Attributes** that are plain data of an instance of a class defined outside the standard
  library (your classes, dataclasses, pydantic models), or of ``types.SimpleNamespace`` /
  ``argparse.Namespace``: a value in the instance's ``__dict__``, a ``__slots__`` value, a
  namedtuple field, or a class-level constant that is not a descriptor. They are read
  statically, so properties, other descriptors, ``__getattr__`` and ``__getattribute__`` never
  run (a property such as ``{df.shape}`` stays as written: put it in a variable first).
  ``_``-prefixed names are refused, and nothing is walked into modules, classes, functions,
  frames, code objects, generators or coroutines, or instances of standard-library classes (such
  as ``os.environ``).
- **Items** of ``dict``, ``list`` and ``tuple``, and of subclasses that do not override
  ``__getitem__``. The base type's own lookup is used, so a subclass's ``__missing__`` never runs
  (a ``defaultdict`` is not changed by a missing key, which stays as written).
- A value that is a :class:`~clarifai_magic.config.Secret`, or whose text contains one of the
  ``secrets`` passed in, is refused.

What a field may show: only plain data, formatted by Python's or the library's own code. That is
``str``, ``int``, ``float``, ``complex``, ``bool``, ``None``, ``bytes``, ``Decimal``,
``Fraction``, ``date``/``datetime``/``time``/``timedelta``, ``UUID``, ``pathlib`` paths, and
``list``/``tuple``/``dict``/``set``/``frozenset`` of those (exact types, up to
:data:`MAX_ITEMS` values in all); NumPy arrays and scalars; pandas ``DataFrame``, ``Series`` and
``Index`` (exact types) whose object-dtype values, categories, labels and names are themselves
plain data (string, numeric, boolean and date columns are not looked into).
Any other object, including one of your classes (its ``__str__``, ``__repr__`` or ``__format__``
is your code), stays as written: format it into a variable first (``label = str(obj)``). Format
specs may not ask for a width or precision above :data:`MAX_WIDTH`.
"""

from __future__ import annotations

import re
import sys
import types
from collections import namedtuple
from collections.abc import Iterable, Mapping
from typing import Any

from .config import MIN_SECRET_CHARS, Secret

MAX_WIDTH = 10_000
MAX_ITEMS = 100_000

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
_NUMBER = re.compile(r"\d+")

# Read through ``type``'s own descriptors so that a metaclass cannot substitute its code.
_MRO = type.__dict__["__mro__"].__get__
_CLASS_DICT = type.__dict__["__dict__"].__get__
_FLAGS = type.__dict__["__flags__"].__get__
_TYPE_MODULE = type.__dict__["__module__"].__get__
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class written in Python (or by a C extension's API)
_TUPLEGETTER = type(_CLASS_DICT(namedtuple("_Pair", "a b"))["a"])  # a namedtuple's fields
_MAX_DEPTH = 100

_CODE_TYPES = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
)


def _scalar_types() -> frozenset[type]:
    import datetime
    import decimal
    import fractions
    import pathlib
    import uuid

    return frozenset(
        {
            str,
            int,
            float,
            complex,
            bool,
            type(None),
            bytes,
            decimal.Decimal,
            fractions.Fraction,
            datetime.date,
            datetime.datetime,
            datetime.time,
            datetime.timedelta,
            uuid.UUID,
            pathlib.PurePosixPath,
            pathlib.PureWindowsPath,
            pathlib.PosixPath,
            pathlib.WindowsPath,
        }
    )


_SCALARS = _scalar_types()
_CONTAINERS = (list, tuple, set, frozenset)
_PANDAS_PLAIN_DTYPES = frozenset(
    {
        "StringDtype",
        "BooleanDtype",
        "DatetimeTZDtype",
        "PeriodDtype",
        *(f"{kind}{bits}Dtype" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)),
        "Float32Dtype",
        "Float64Dtype",
    }
)


class _Refused(Exception):
    """A step or value outside the allow-list: the field stays as written."""


def _lookup_static(cls: type, name: str) -> Any:
    """``name`` in the class dicts along ``cls``'s MRO, without running any descriptor."""
    for klass in _MRO(cls):
        found = _CLASS_DICT(klass).get(name, _MISSING)
        if found is not _MISSING:
            return found
    return _MISSING


def _module_of(cls: type) -> str:
    try:
        module = _TYPE_MODULE(cls)  # a static read, which also knows C types' modules
    except AttributeError:
        return ""
    return module if type(module) is str else ""


def _is_stdlib(cls: type) -> bool:
    top = _module_of(cls).partition(".")[0]
    return top in sys.stdlib_module_names or top == "__future__"


def _is(value: Any, classes: type | tuple[type, ...]) -> bool:
    # Not isinstance(): for a non-matching object it reads ``__class__``, which user code can be.
    return issubclass(type(value), classes)


def _walkable(value: Any) -> bool:
    """Whether ``value`` is an object whose attributes a prompt may read."""
    cls = type(value)
    argparse = sys.modules.get("argparse")
    if cls is types.SimpleNamespace or (argparse is not None and cls is argparse.Namespace):
        return True
    if issubclass(cls, _CODE_TYPES) or not _FLAGS(cls) & _HEAPTYPE:
        return False
    return not _is_stdlib(cls)


def _attribute(value: Any, name: str) -> Any:
    if name.startswith("_") or not _walkable(value):
        raise _Refused
    cls = type(value)
    on_class = _lookup_static(cls, name)
    kind = type(on_class)
    if kind is types.MemberDescriptorType or kind is _TUPLEGETTER:
        # A __slots__ value or a namedtuple field: read by C code, nothing of the user's runs.
        try:
            return on_class.__get__(value, cls)
        except (AttributeError, IndexError):  # an empty slot
            raise _Refused from None
    if on_class is not _MISSING and _lookup_static(kind, "__set__") is not _MISSING:
        raise _Refused  # a property or another data descriptor: it would run code
    dict_descriptor = _lookup_static(cls, "__dict__")
    if type(dict_descriptor) in (types.GetSetDescriptorType, types.MemberDescriptorType):
        # The C-level ``__dict__``; a class that replaced it with a property is not asked.
        instance_dict = dict_descriptor.__get__(value, cls)
        if _is(instance_dict, dict):
            found = dict.get(instance_dict, name, _MISSING)
            if found is not _MISSING:
                return found
    if on_class is _MISSING or _lookup_static(kind, "__get__") is not _MISSING:
        raise _Refused  # absent (``__getattr__`` is never asked), or a method or descriptor
    return on_class  # a class-level constant


def _item(value: Any, key: int | str) -> Any:
    for base in (dict, list, tuple):
        if _is(value, base):
            break
    else:
        raise _Refused
    if _lookup_static(type(value), "__getitem__") is not _CLASS_DICT(base)["__getitem__"]:
        raise _Refused  # a subclass with a lookup of its own
    if base is dict:
        found = dict.get(value, key, _MISSING)  # never __missing__
        if found is _MISSING:
            raise _Refused
        return found
    if not isinstance(key, int):
        raise _Refused
    try:
        return base.__getitem__(value, key)
    except IndexError:
        raise _Refused from None


def _resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    head = re.match(r"[A-Za-z_]\w*", expr)
    assert head is not None
    if head.group().startswith("_"):
        raise _Refused
    if isinstance(namespace, dict):
        value = dict.get(namespace, head.group(), _MISSING)
    else:
        value = namespace.get(head.group(), _MISSING)
    for step in _STEP.finditer(expr, head.end()):
        if value is _MISSING or _is(value, Secret):
            break
        if step.group("attr"):
            value = _attribute(value, step.group("attr"))
        elif step.group("index") is not None:
            value = _item(value, int(step.group("index")))
        else:
            value = _item(value, step.group("key"))
    if value is _MISSING or _is(value, Secret):
        raise _Refused
    return value


class _Budget:
    """How many more values the plain-data check may look at, so a huge object is refused fast."""

    def __init__(self) -> None:
        self.left = MAX_ITEMS

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise _Refused


def _check_plain(value: Any, budget: _Budget, seen: set[int], depth: int = 0) -> None:
    """Raise :class:`_Refused` unless formatting ``value`` runs only Python's or a library's."""
    budget.spend()
    cls = type(value)
    if cls in _SCALARS:
        return
    if depth > _MAX_DEPTH:
        raise _Refused
    if cls in _CONTAINERS or cls is dict:
        if id(value) in seen:
            return  # a cycle: repr() shows it as [...]
        seen.add(id(value))
        if len(value) > budget.left:
            raise _Refused
        items: Iterable[Any] = (
            (x for kv in dict.items(value) for x in kv) if cls is dict else iter(value)
        )
        for item in items:
            _check_plain(item, budget, seen, depth + 1)
        return
    module = _module_of(cls)
    if module.startswith("numpy"):
        _check_numpy(value, budget, seen)
    elif module.startswith("pandas"):
        _check_pandas(value, budget, seen)
    else:
        raise _Refused


def _check_numpy(value: Any, budget: _Budget, seen: set[int]) -> None:
    np = sys.modules.get("numpy")
    if np is None:
        raise _Refused
    if type(value) is np.ndarray:
        if value.dtype.kind == "O":
            if value.size > budget.left:
                raise _Refused
            _check_values(value.ravel().tolist(), budget, seen)
        return
    if _is(value, np.generic) and not _is(value, np.object_):
        return
    raise _Refused


def _check_pandas(value: Any, budget: _Budget, seen: set[int]) -> None:
    pd = sys.modules.get("pandas")
    if pd is None:
        raise _Refused
    cls = type(value)
    if _module_of(cls).startswith("pandas._libs"):
        return  # Timestamp, Timedelta, Period, NaT, NA, Interval
    if cls is pd.DataFrame:
        _check_index(value.columns, budget, seen)
        _check_index(value.index, budget, seen)
        for _, column in value.items():
            _check_array(column, budget, seen)
    elif cls is pd.Series:
        _check_index(value.index, budget, seen)
        _check_plain(value.name, budget, seen)
        _check_array(value, budget, seen)
    elif _is(value, pd.Index):
        _check_index(value, budget, seen)
    else:
        raise _Refused


def _check_index(index: Any, budget: _Budget, seen: set[int]) -> None:
    pd = sys.modules["pandas"]
    if not _is(index, pd.Index) or not _module_of(type(index)).startswith("pandas"):
        raise _Refused
    _check_values(list(index.names), budget, seen)
    _check_array(index, budget, seen)


def _check_array(array: Any, budget: _Budget, seen: set[int]) -> None:
    """The values of a NumPy-backed or pandas array, where their type does not already say."""
    dtype = array.dtype
    module = _module_of(type(dtype))
    if module.startswith("numpy") and dtype.kind != "O":
        return  # numbers, dates, fixed-width strings: formatted by NumPy itself
    if module.startswith("pandas"):
        pd = sys.modules["pandas"]
        if type(dtype) is pd.CategoricalDtype:
            _check_index(dtype.categories, budget, seen)
            return
        if any(type(dtype) is getattr(pd, name, None) for name in _PANDAS_PLAIN_DTYPES):
            return  # strings, nullable numbers and booleans, dates: never user objects
    elif not module.startswith("numpy"):
        raise _Refused  # an extension dtype from elsewhere formats with its own code
    if len(array) > budget.left:
        raise _Refused
    _check_values(array.tolist(), budget, seen)


def _check_values(values: list[Any], budget: _Budget, seen: set[int]) -> None:
    for item in values:
        _check_plain(item, budget, seen)


def _check_spec(spec: str) -> None:
    # Every number in a spec is a fill, width or precision; a huge one would exhaust memory.
    if any(len(n) > 6 or int(n) > MAX_WIDTH for n in _NUMBER.findall(spec)):
        raise _Refused


def _fill(match: re.Match[str], namespace: Mapping[str, Any], secrets: list[str]) -> str:
    value = _resolve(match.group("expr"), namespace)
    _check_plain(value, _Budget(), set())
    spec = match.group("spec")
    if spec:
        _check_spec(spec)
        text = format(value, spec)
    else:
        text = str(value)
    if any(secret in text for secret in secrets):
        raise _Refused
    return text


def interpolate(
    template: str, namespace: Mapping[str, Any], *, secrets: Iterable[str | Secret] = ()
) -> str:
    """Replace the placeholders that resolve; leave everything else untouched.

    ``secrets`` (for example the PAT; values under 8 characters are ignored) are never put into
    the prompt: a field whose text would contain one stays as written. See the module docstring
    for what a field may reach.
    """
    hidden = [s.reveal() if isinstance(s, Secret) else s for s in secrets]
    hidden = [s for s in hidden if len(s) >= MIN_SECRET_CHARS]

    def replace(match: re.Match[str]) -> str:
        if match.group("double"):
            return match.group(0)
        try:
            return _fill(match, namespace, hidden)
        except Exception:  # refused, or a library's formatting failed: keep the text as written
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
