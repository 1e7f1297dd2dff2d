"""What ``{...}`` in a prompt may reach: plain data yes; secrets, modules and user code never.

Unit tests call :func:`clarifai_magic.prompt.interpolate` on a namespace built the way a notebook
builds it (real imports, real classes, a real frame and generator); user code in it records when
it runs, so each test checks both the text sent and that nothing of the user's ran. One test
drives the whole path in a real kernel against the offline server.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

from clarifai_magic.config import Secret, find_credentials
from clarifai_magic.prompt import MAX_WIDTH, interpolate
from clarifai_magic.testing import OfflineServer, text

from .conftest import TEST_PAT
from .kernel_util import Kernel

RAN: list[str] = []


class Sneaky:
    """Every hook Python could call while reading or formatting an object records that it ran."""

    plain = "class constant"

    def __init__(self) -> None:
        self.name = "sneaky instance"

    @property
    def prop(self) -> str:
        RAN.append("property")
        return TEST_PAT

    @property  # isinstance() reads __class__ of objects that are not instances
    def __class__(self) -> type:  # type: ignore[override]
        RAN.append("__class__")
        return Secret

    def __getattr__(self, name: str) -> str:
        RAN.append(f"__getattr__ {name}")
        return TEST_PAT

    def __getitem__(self, key: Any) -> str:
        RAN.append("__getitem__")
        return TEST_PAT

    def __format__(self, spec: str) -> str:
        RAN.append("__format__")
        return TEST_PAT

    def __str__(self) -> str:
        RAN.append("__str__")
        return TEST_PAT

    def __repr__(self) -> str:
        RAN.append("__repr__")
        return TEST_PAT


class Lookup(dict):
    def __getitem__(self, key: Any) -> Any:
        RAN.append("dict subclass __getitem__")
        return TEST_PAT


class Counting(dict):
    """A dict subclass that keeps dict's lookup: its items may be read."""

    def __missing__(self, key: Any) -> Any:
        RAN.append("__missing__")
        return TEST_PAT


@dataclass
class Run:
    lr: float
    tags: list[str]


@dataclass(slots=True)
class Point:
    x: int
    y: int


class Pair(NamedTuple):
    left: str
    right: str


def generator() -> Any:
    yield 1


@pytest.fixture(autouse=True)
def _clean() -> Any:
    RAN.clear()
    yield
    assert RAN == [], f"user code ran: {RAN}"


@pytest.fixture
def ns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A notebook's namespace: imports, data, user objects, and the package's own credentials."""
    monkeypatch.setenv("CLARIFAI_PAT", TEST_PAT)
    namespace: dict[str, Any] = {"__builtins__": __builtins__}
    exec("import os, sys\nenv = os.environ\nframe = sys._getframe()", namespace)
    creds = find_credentials({"CLARIFAI_PAT": TEST_PAT}, Path("/nonexistent"))
    namespace.update(
        {
            "In": ["", "x = 1", "x + 1"],
            "Out": {2: 2},
            "name": "sales",
            "n": 3.14159,
            "d": {"k": "v", "nested": {"list": [1, 2, 3]}},
            "run": Run(0.01, ["a", "b"]),
            "pt": Point(3, 4),
            "pair": Pair("L", "R"),
            "ns_": types.SimpleNamespace(epochs=3),
            "sneaky": Sneaky(),
            "holder": Run(0.1, [Sneaky()]),
            "lookup": Lookup(k="v"),
            "counting": Counting(k="v"),
            "dd": collections.defaultdict(list),
            "gen": generator(),
            "fn": generator,
            "cls": Sneaky,
            "creds": creds,
            "secret": Secret(TEST_PAT),
            "token": TEST_PAT,
            "when": datetime.date(2024, 5, 1),
            "price": decimal.Decimal("9.50"),
        }
    )
    return namespace


def unchanged(template: str, namespace: dict[str, Any], **kwargs: Any) -> None:
    result = interpolate(template, namespace, **kwargs)
    assert result == template
    assert TEST_PAT not in result


# ------------------------------------------------------------------------- the PAT and modules


@pytest.mark.parametrize(
    "template",
    [
        "{sys.modules['os'].environ['CLARIFAI_PAT']}",
        "{os.environ['CLARIFAI_PAT']}",
        "{os.environ}",
        "{env['CLARIFAI_PAT']}",
        "{env}",
        "{env.copy}",
        "{sys.modules}",
        "{os}",
        "{os.sep}",
        "{creds.pat}",
        "{creds}",
        "{secret}",
        "{__builtins__}",
    ],
)
def test_environment_modules_and_secrets_are_unreachable(template: str, ns: dict[str, Any]) -> None:
    unchanged(f"key: {template} end", ns)


def test_a_value_holding_a_given_secret_is_not_sent(ns: dict[str, Any]) -> None:
    ns["client"] = types.SimpleNamespace(api_key=TEST_PAT, base_url="https://x.test")
    unchanged("{token} {client.api_key}", ns, secrets=[Secret(TEST_PAT)])
    assert interpolate("{client.base_url}", ns, secrets=[TEST_PAT]) == "https://x.test"
    # Without being told the secret, a variable the user filled with it is plain data.
    assert interpolate("{token}", ns) == TEST_PAT


# ------------------------------------------------------ frames, code, classes, generators


@pytest.mark.parametrize(
    "template",
    [
        "{frame.f_globals}",
        "{frame.f_locals}",
        "{frame.f_back}",
        "{frame}",
        "{gen.gi_frame}",
        "{gen.gi_code}",
        "{gen}",
        "{fn.__globals__}",
        "{fn.__code__}",
        "{fn.__name__}",
        "{fn}",
        "{cls.plain}",
        "{cls}",
        "{run.__dict__}",
        "{run.__class__}",
        "{pair._fields}",
    ],
)
def test_internals_of_frames_functions_generators_and_classes_are_refused(
    template: str, ns: dict[str, Any]
) -> None:
    unchanged(template, ns)


# ------------------------------------------------------------------------- user code never runs


@pytest.mark.parametrize(
    "template",
    [
        "{sneaky.prop}",  # a property
        "{sneaky.missing}",  # would reach __getattr__
        "{sneaky['k']}",  # __getitem__
        "{sneaky[0]}",
        "{sneaky}",  # __str__
        "{sneaky:>5}",  # __format__
        "{sneaky.name.upper}",
        "{holder.tags}",  # a list holding an object: its __repr__ would run
        "{lookup['k']}",  # a dict subclass with its own __getitem__
        "{counting['missing']}",  # __missing__
    ],
)
def test_properties_getattr_getitem_and_format_of_user_objects_never_run(
    template: str, ns: dict[str, Any]
) -> None:
    unchanged(template, ns)


def test_a_defaultdict_is_not_changed_by_a_missing_key(ns: dict[str, Any]) -> None:
    unchanged("{dd['x']}", ns)
    assert ns["dd"] == {}


# ------------------------------------------------------------------------------ format specs


@pytest.mark.parametrize(
    "template",
    [
        "{name:>9999999999999}",
        "{name:x<10001}",
        "{n:.99999f}",
        "{n:99999999999999999999999999999999.2f}",
        "{name:=^100000}",
    ],
)
def test_huge_widths_and_precisions_stay_as_written(template: str, ns: dict[str, Any]) -> None:
    unchanged(template, ns)


def test_widths_within_the_bound_are_applied(ns: dict[str, Any]) -> None:
    assert interpolate("[{name:>8}] {n:.2f} {when:%d %b}", ns) == "[   sales] 3.14 01 May"
    assert len(interpolate(f"{{name:>{MAX_WIDTH}}}", ns)) == MAX_WIDTH


# ------------------------------------------------------------------------------ what works


def test_plain_data_names_attributes_and_items_are_filled(ns: dict[str, Any]) -> None:
    template = (
        "{name} {n:.1f} {In[1]} {Out[2]} {d['k']} {d['nested']['list'][-1]} {run.lr} "
        "{run.tags[0]} {run.tags} {pt.x},{pt.y} {pair.left}{pair[1]} {ns_.epochs} "
        "{sneaky.name} {sneaky.plain} {counting['k']} {when} {price}"
    )
    assert interpolate(template, ns) == (
        "sales 3.1 x = 1 2 v 3 0.01 a ['a', 'b'] 3,4 LR 3 sneaky instance class constant v "
        "2024-05-01 9.50"
    )


def test_pandas_and_numpy_values_are_shown_as_their_library_prints_them(
    ns: dict[str, Any],
) -> None:
    df = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
    arr = np.arange(6).reshape(2, 3)
    ns.update(df=df, arr=arr, total=np.float64(22.5), s=df["city"])
    assert interpolate("{df}", ns) == str(df)
    assert interpolate("{arr} {total} {s}", ns) == f"{arr} 22.5 {df['city']}"
    # A property of a library object is code too: compute it into a variable first.
    unchanged("{df.shape}", ns)
    big = pd.DataFrame({"name": ["row"] * 300_000, "n": pd.array(range(300_000), dtype="Int64")})
    ns["big"] = big
    assert interpolate("{big}", ns) == str(big)  # string and nullable columns are not walked


def test_a_dataframe_holding_user_objects_is_not_printed(ns: dict[str, Any]) -> None:
    ns["df"] = pd.DataFrame({"obj": [Sneaky()]})
    ns["labelled"] = pd.Series([1], index=[Sneaky()])
    ns["category"] = pd.Series(pd.Categorical([Sneaky()]))
    ns["arr"] = np.empty(1, dtype=object)
    ns["arr"][0] = Sneaky()
    RAN.clear()  # building them asked the objects about themselves; interpolating must not
    unchanged("{df} {labelled} {category} {arr}", ns)


def test_hostile_values_never_raise(ns: dict[str, Any]) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    looped: list[Any] = [1]
    looped.append(looped)
    ns.update(
        deep=deep,
        looped=looped,
        huge_int=10**5000,
        many=list(range(1_000_000)),
    )
    unchanged("{deep} {huge_int} {many} {In[99999999999999999999999]} {d[1]} {In['a']}", ns)
    assert interpolate("{looped}", ns) == "[1, [...]]"


# ------------------------------------------------------------------------------ a real kernel


def test_kernel_sends_pat_paths_verbatim_and_the_pat_nowhere(
    server: OfflineServer, kernel: Kernel
) -> None:
    kernel.run("%load_ext clarifai_magic")
    kernel.run("import os, sys\nenv = os.environ\ncity = 'Oslo'")
    server.enqueue(text("ok"))
    prompt = (
        "A {sys.modules['os'].environ['CLARIFAI_PAT']} B {os.environ['CLARIFAI_PAT']} "
        "C {env['CLARIFAI_PAT']} in {city}"
    )
    run = kernel.run(f"%%clarifai\n{prompt}")
    assert run.reply["content"]["status"] == "ok", run.error
    sent = server.chat_requests[-1]
    assert sent.json["messages"][-1]["content"] == prompt.replace("{city}", "Oslo")
    assert all(TEST_PAT.encode() not in r.body for r in server.chat_requests)
    assert TEST_PAT not in str([m["content"] for m in run.messages])
