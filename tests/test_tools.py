"""Tools: schemas from Python types and docstrings, declaration errors, validation, conversion,
and running calls (parallel, async under a running loop, timeouts, failures, confirmation)."""

import _thread
import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import json
import subprocess
import sys
import threading
import time
from enum import Enum
from typing import Annotated, Any, Literal, Optional

import pydantic
import pytest
from typing_extensions import NotRequired, TypedDict  # typing has NotRequired from 3.11

import clarifai_magic
from clarifai_magic.stream import ToolCall
from clarifai_magic.tools import (
    Tool,
    ToolDeclarationError,
    ToolRunner,
    as_tool,
    describe_schema,
    serialize_result,
    tool,
)

# Types used by tools live at module level, where type hints resolve (as in a notebook).


class Color(Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Point:
    """A point on the map.

    Attributes:
        x: Longitude in degrees.
        y: Latitude in degrees.
    """

    x: float
    y: float
    label: str = ""


@dataclasses.dataclass
class Route:
    start: Point
    stops: list[Point]
    color: Color = Color.RED


class Filters(TypedDict):
    """Search filters."""

    genre: str
    year: NotRequired[int]


class Address(pydantic.BaseModel):
    street: str
    city: str = pydantic.Field(description="City name")


class Person(pydantic.BaseModel):
    """A person to look up."""

    name: str
    address: Address
    nickname: str | None = None


@dataclasses.dataclass
class Node:
    value: int
    children: list["Node"]


class Positive(pydantic.BaseModel):
    n: int = pydantic.Field(gt=0)


def schema_of(func: Any) -> dict[str, Any]:
    return as_tool(func).parameters


def call(name: str, arguments: Any = "", call_id: str = "call_1") -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=call_id, name=name, arguments=text)


@pytest.fixture
def runner():
    with ToolRunner() as r:
        yield r


def run_one(runner: ToolRunner, func: Any, arguments: Any = "", **kwargs: Any):
    spec = as_tool(func)
    [outcome] = runner.run_calls([call(spec.name, arguments)], {spec.name: spec}, **kwargs)
    return outcome


# --- declaring -------------------------------------------------------------------------------


def test_issue_example_gives_the_openai_tool_entry_and_stays_callable():
    @tool
    def get_weather(location: str, unit: Literal["C", "F"] = "C") -> dict:
        """Current temperature for a place.

        Args:
            location: City and country, e.g. "Bogotá, Colombia".
        """
        return {"location": location, "unit": unit}

    assert get_weather("Lima") == {"location": "Lima", "unit": "C"}
    assert isinstance(get_weather.__clarifai_tool__, Tool)
    assert as_tool(get_weather) is get_weather.__clarifai_tool__
    assert as_tool(get_weather).schema() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current temperature for a place.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": 'City and country, e.g. "Bogotá, Colombia".',
                    },
                    "unit": {"type": "string", "enum": ["C", "F"], "default": "C"},
                },
                "required": ["location"],
            },
        },
    }
    assert json.loads(describe_schema(as_tool(get_weather))) == as_tool(get_weather).schema()
    assert "Bogotá" in describe_schema(as_tool(get_weather))


def test_decorator_options_are_kept():
    @tool(name="lookup", description="Look it up.", confirm=True, timeout=2.5)
    def find(query: str) -> str:
        return query

    spec = as_tool(find)
    assert (spec.name, spec.description, spec.confirm, spec.timeout) == (
        "lookup",
        "Look it up.",
        True,
        2.5,
    )
    assert spec.schema()["function"]["name"] == "lookup"
    assert find("x") == "x"


def test_scalar_container_and_union_types():
    def f(
        a: int,
        b: float,
        c: bool,
        d: list[str],
        e: tuple[int, str],
        g: tuple[float, ...],
        h: dict[str, int],
        i: Optional[int],  # noqa: UP045 - the spelling under test
        j: int | str | None,
        k: Color,
        m: Annotated[str, "What to search for"],
        n: dt.datetime,
        o: dt.date,
        p: set[int],
        q: list,
        r: dict,
        s: Any,
        t: None,
    ) -> None:
        """Many kinds."""

    props = schema_of(f)["properties"]
    assert props == {
        "a": {"type": "integer"},
        "b": {"type": "number"},
        "c": {"type": "boolean"},
        "d": {"type": "array", "items": {"type": "string"}},
        "e": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        "g": {"type": "array", "items": {"type": "number"}},
        "h": {"type": "object", "additionalProperties": {"type": "integer"}},
        "i": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "j": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        "k": {"type": "string", "enum": ["red", "green"]},
        "m": {"type": "string", "description": "What to search for"},
        "n": {"type": "string", "format": "date-time"},
        "o": {"type": "string", "format": "date"},
        "p": {"type": "array", "items": {"type": "integer"}},
        "q": {"type": "array"},
        "r": {"type": "object"},
        "s": {},
        "t": {"type": "null"},
    }
    assert schema_of(f)["required"] == list(props)


def test_defaults_are_shown_as_json_and_make_parameters_optional():
    def f(
        color: Color = Color.GREEN,
        when: dt.date = dt.date(2024, 5, 1),
        size: tuple[int, int] = (1, 2),
        limit: int | None = None,
    ) -> None:
        pass

    schema = schema_of(f)
    assert "required" not in schema
    assert schema["properties"]["color"]["default"] == "green"
    assert schema["properties"]["when"]["default"] == "2024-05-01"
    assert schema["properties"]["size"]["default"] == [1, 2]
    assert schema["properties"]["limit"]["default"] is None


def test_dataclass_parameter_is_a_nested_object_schema():
    def plan(route: Route) -> None:
        """Plan a route."""

    point = {
        "type": "object",
        "description": "A point on the map.",
        "properties": {
            "x": {"type": "number", "description": "Longitude in degrees."},
            "y": {"type": "number", "description": "Latitude in degrees."},
            "label": {"type": "string", "default": ""},
        },
        "required": ["x", "y"],
    }
    assert schema_of(plan) == {
        "type": "object",
        "properties": {
            "route": {
                "type": "object",
                "properties": {
                    "start": point,
                    "stops": {"type": "array", "items": point},
                    "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
                },
                "required": ["start", "stops"],
            }
        },
        "required": ["route"],
    }


def test_typeddict_required_and_not_required_keys():
    def search(filters: Filters) -> None:
        pass

    assert schema_of(search)["properties"]["filters"] == {
        "type": "object",
        "description": "Search filters.",
        "properties": {"genre": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["genre"],
    }


def test_pydantic_model_schema_is_self_contained():
    def find(person: Person) -> None:
        pass

    schema = schema_of(find)
    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
    assert schema["properties"]["person"] == {
        "type": "object",
        "description": "A person to look up.",
        "properties": {
            "name": {"type": "string"},
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string", "description": "City name"},
                },
                "required": ["street", "city"],
            },
            "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["name", "address"],
    }


def test_numpy_docstring():
    def f(city: str, days: int = 3) -> None:
        """Forecast for a city.

        Longer explanation that is not the summary.

        Parameters
        ----------
        city : str
            The city,
            with country.
        days : int, optional
            How many days.

        Returns
        -------
        None
        """

    spec = as_tool(f)
    assert spec.description == "Forecast for a city."
    assert spec.parameters["properties"]["city"]["description"] == "The city, with country."
    assert spec.parameters["properties"]["days"]["description"] == "How many days."


def test_sphinx_docstring():
    def f(city: str, days: int = 3) -> None:
        """Forecast for a city,
        over several days.

        :param city: The city,
            with country.
        :param int days: How many days.
        :returns: nothing
        """

    spec = as_tool(f)
    assert spec.description == "Forecast for a city, over several days."
    assert spec.parameters["properties"]["city"]["description"] == "The city, with country."
    assert spec.parameters["properties"]["days"]["description"] == "How many days."


def test_google_docstring_with_types_and_continuation_lines():
    def f(city: str, days: int = 3) -> None:
        """Forecast for a city.
        Args:
            city (str): The city,
                with country.
            days (int, optional): How many days.

        Raises:
            ValueError: never.
        """

    spec = as_tool(f)
    assert spec.description == "Forecast for a city."
    assert spec.parameters["properties"]["city"]["description"] == "The city, with country."
    assert spec.parameters["properties"]["days"]["description"] == "How many days."
    assert "ValueError" not in json.dumps(spec.parameters)


def test_annotated_description_wins_over_docstring():
    def f(city: Annotated[str, "From Annotated"]) -> None:
        """Summary.

        Args:
            city: From the docstring.
        """

    assert schema_of(f)["properties"]["city"]["description"] == "From Annotated"


def test_strict_mode_closes_objects_and_makes_optionals_nullable():
    @tool(strict=True)
    def plan(route: Route, note: str = "none", limit: int | None = None) -> None:
        pass

    point = {
        "type": "object",
        "description": "A point on the map.",
        "properties": {
            "x": {"type": "number", "description": "Longitude in degrees."},
            "y": {"type": "number", "description": "Latitude in degrees."},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": ""},
        },
        "required": ["x", "y", "label"],
        "additionalProperties": False,
    }
    entry = as_tool(plan).schema()["function"]
    assert entry["strict"] is True
    assert entry["parameters"] == {
        "type": "object",
        "properties": {
            "route": {
                "type": "object",
                "properties": {
                    "start": point,
                    "stops": {"type": "array", "items": point},
                    "color": {
                        "anyOf": [{"type": "string", "enum": ["red", "green"]}, {"type": "null"}],
                        "default": "red",
                    },
                },
                "required": ["start", "stops", "color"],
                "additionalProperties": False,
            },
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "none"},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
        "required": ["route", "note", "limit"],
        "additionalProperties": False,
    }
    assert "strict" not in as_tool(lambda_free_tool).schema()["function"]


def lambda_free_tool(x: int) -> int:
    return x


@pytest.mark.parametrize("annotation", [dict[str, int], Any, list])
def test_strict_mode_rejects_what_it_cannot_express(annotation):
    def f(value):
        pass

    f.__annotations__ = {"value": annotation}
    with pytest.raises(ToolDeclarationError, match="strict"):
        tool(strict=True)(f)
    as_tool(f)  # fine without strict


# --- declaration errors ----------------------------------------------------------------------


def test_missing_type_hint_fails_at_decoration_time():
    with pytest.raises(ToolDeclarationError, match=r"parameter 'unit' has no type hint"):

        @tool
        def get_weather(location: str, unit="C") -> str:
            return location


@pytest.mark.parametrize("source", ["def f(*items: int): pass", "def f(**options: str): pass"])
def test_star_parameters_are_rejected(source):
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(ToolDeclarationError, match="by name"):
        tool(namespace["f"])


class Thing:
    """A plain class: pydantic has no schema for it."""


def test_unsupported_type_names_the_parameter_and_the_type():
    def f(z: Thing) -> None:
        pass

    with pytest.raises(ToolDeclarationError, match=r"parameter 'z' has type Thing") as info:
        as_tool(f)
    assert "dataclasses" in str(info.value)


def test_other_declaration_errors():
    def recursive(node: Node) -> None:
        pass

    with pytest.raises(ToolDeclarationError, match="recursive"):
        as_tool(recursive)
    with pytest.raises(ToolDeclarationError, match="not a valid tool name"):
        as_tool(lambda x: x)
    with pytest.raises(ToolDeclarationError, match="not callable"):
        as_tool(42)
    with pytest.raises(ToolDeclarationError, match="timeout"):
        tool(timeout=0)(lambda_free_tool)


# --- callables other than plain functions ----------------------------------------------------


class Thermometer:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def read(self, celsius: float, unit: Literal["C", "K"] = "C") -> float:
        """Read the temperature."""
        return celsius + self.offset + (273.15 if unit == "K" else 0)


def convert(value: float, factor: float, unit: str = "m") -> str:
    """Scale a value."""
    return f"{value * factor}{unit}"


def test_bound_method_has_no_self_and_uses_the_instance(runner):
    spec = as_tool(Thermometer(offset=1.0).read)
    assert spec.name == "read"
    assert spec.description == "Read the temperature."
    assert list(spec.parameters["properties"]) == ["celsius", "unit"]
    outcome = run_one(runner, Thermometer(offset=1.0).read, {"celsius": 20})
    assert outcome.ok and outcome.result == 21.0


def test_partial_drops_bound_arguments(runner):
    doubled = functools.partial(convert, factor=2, unit="cm")
    spec = as_tool(doubled)
    assert spec.name == "convert"
    assert spec.parameters == {
        "type": "object",
        "properties": {"value": {"type": "number"}},
        "required": ["value"],
    }
    assert run_one(runner, doubled, {"value": 3}).content == "6.0cm"


def test_method_and_partial_of_a_decorated_function_keep_its_options():
    @tool(name="scaled", confirm=True)
    def scale(value: float, factor: float) -> float:
        return value * factor

    spec = as_tool(functools.partial(scale, factor=3))
    assert (spec.name, spec.confirm, list(spec.parameters["properties"])) == (
        "scaled",
        True,
        ["value"],
    )


async def fetch(url: str, retries: int = 1) -> dict:
    """Fetch a page."""
    await asyncio.sleep(0.01)
    return {"url": url, "loop_thread": threading.current_thread().name}


def test_async_function_is_a_tool(runner):
    spec = as_tool(fetch)
    assert spec.is_async and spec.description == "Fetch a page."
    outcome = run_one(runner, fetch, {"url": "https://example.com"})
    assert outcome.ok
    assert outcome.result["url"] == "https://example.com"
    assert outcome.result["loop_thread"] != threading.current_thread().name


def test_async_tool_runs_while_the_caller_thread_runs_an_event_loop(runner):
    # ipykernel runs a loop on the main thread while a cell executes; the magic calls run_calls
    # synchronously from inside it.
    async def cell():
        asyncio.get_running_loop()
        return run_one(runner, fetch, {"url": "u"})

    outcome = asyncio.run(cell())
    assert outcome.ok, outcome.content
    assert json.loads(outcome.content)["url"] == "u"


# --- validation and conversion ---------------------------------------------------------------


def test_invalid_arguments_are_reported_to_the_model_and_the_tool_is_not_run(runner):
    ran = []

    def get_weather(location: str, unit: Literal["C", "F"] = "C", days: int = 1) -> str:
        ran.append(location)
        return "sunny"

    spec = as_tool(get_weather)
    calls = [
        call("get_weather", {"location": 5}, "a"),
        call("get_weather", {"unit": "C"}, "b"),
        call("get_weather", {"location": "Lima", "unit": "K"}, "c"),
        call("get_weather", {"location": "Lima", "city": "Lima"}, "d"),
        call("get_weather", {"location": "Lima", "days": 1.5}, "e"),
    ]
    outcomes = runner.run_calls(calls, {"get_weather": spec})
    assert ran == []
    assert [o.ok for o in outcomes] == [False] * 5
    assert all(o.content.startswith("Error: invalid arguments for get_weather: ") for o in outcomes)
    assert "location: Input should be a valid string" in outcomes[0].content
    assert "location: Field required" in outcomes[1].content
    assert "unit: Input should be 'C' or 'F'" in outcomes[2].content
    assert "city: Extra inputs are not permitted" in outcomes[3].content
    assert "days: Input should be a valid integer" in outcomes[4].content
    assert outcomes[3].arguments == {"location": "Lima", "city": "Lima"}


def test_nested_validation_errors_give_a_path(runner):
    def plan(route: Route) -> None:
        pass

    bad = {"route": {"start": {"x": 1, "y": 2}, "stops": [{"x": 1, "y": "north"}]}}
    outcome = run_one(runner, plan, bad)
    assert not outcome.ok
    assert "route.stops[0].y: Input should be a valid number" in outcome.content


def test_arguments_are_converted_to_the_annotated_types(runner):
    seen = {}

    def plan(
        route: Route,
        person: Person,
        color: Color,
        size: tuple[int, int],
        when: dt.datetime,
        tags: set[str],
        filters: Filters,
        count: int,
    ) -> str:
        seen.update(locals())
        return "ok"

    arguments = {
        "route": {"start": {"x": 1, "y": 2}, "stops": [{"x": 3, "y": 4, "label": "b"}]},
        "person": {"name": "Ana", "address": {"street": "Main", "city": "Quito"}},
        "color": "green",
        "size": [3, 4],
        "when": "2024-05-01T10:00:00Z",
        "tags": ["a", "b", "a"],
        "filters": {"genre": "jazz"},
        "count": 2.0,
    }
    outcome = run_one(runner, plan, arguments)
    assert outcome.ok, outcome.content
    assert seen["route"] == Route(Point(1, 2), [Point(3, 4, "b")], Color.RED)
    assert isinstance(seen["route"].start, Point)
    assert seen["person"] == Person(name="Ana", address=Address(street="Main", city="Quito"))
    assert seen["color"] is Color.GREEN
    assert seen["size"] == (3, 4)
    assert seen["when"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone.utc)
    assert seen["tags"] == {"a", "b"}
    assert seen["filters"] == {"genre": "jazz"}
    assert seen["count"] == 2 and isinstance(seen["count"], int)


def test_pydantic_constraints_and_bad_dates_are_argument_errors(runner):
    def f(p: Positive) -> None:
        pass

    def g(when: dt.date) -> None:
        pass

    outcome = run_one(runner, f, {"p": {"n": -1}})
    assert not outcome.ok and "invalid arguments for f: p.n: Input should be greater than 0" in (
        outcome.content
    )
    outcome = run_one(runner, g, {"when": "next tuesday"})
    assert not outcome.ok and "when: Input should be a valid date" in outcome.content
    assert "tuesday" not in outcome.content  # the model's input is not echoed back


def test_strict_nulls_mean_defaults(runner):
    @tool(strict=True)
    def f(route: Route, note: str = "none", limit: int | None = 5) -> dict:
        return {"label": route.start.label, "note": note, "limit": limit}

    start = {"x": 1, "y": 2, "label": None}
    outcome = run_one(runner, f, {"route": {"start": start, "stops": [], "color": None},
                                  "note": None, "limit": None})  # fmt: skip
    assert outcome.ok, outcome.content
    assert outcome.result == {"label": "", "note": "none", "limit": None}
    # A model that ignores strict mode may leave optional arguments out: that works too.
    outcome = run_one(runner, f, {"route": {"start": {"x": 1, "y": 2}, "stops": []}})
    assert outcome.ok, outcome.content
    assert outcome.result == {"label": "", "note": "none", "limit": 5}


def test_empty_arguments_mean_no_arguments(runner):
    def now() -> str:
        return "noon"

    assert run_one(runner, now, "").content == "noon"
    assert run_one(runner, now, "null").content == "noon"


def test_malformed_json_and_non_object_arguments(runner):
    outcome = run_one(runner, lambda_free_tool, '{"x": 1')
    assert not outcome.ok and outcome.arguments is None
    assert outcome.content.startswith(
        "Error: the arguments for lambda_free_tool are not valid JSON"
    )
    outcome = run_one(runner, lambda_free_tool, "[1]")
    assert not outcome.ok and "must be a JSON object" in outcome.content


def test_unknown_tool(runner):
    spec = as_tool(lambda_free_tool)
    [outcome] = runner.run_calls([call("nope", "{}", "c9")], {spec.name: spec})
    assert (outcome.ok, outcome.call_id, outcome.name) == (False, "c9", "nope")
    assert outcome.content == "Error: there is no tool named 'nope'. Tools: lambda_free_tool."


# --- running ---------------------------------------------------------------------------------


def test_parallel_calls_run_concurrently_and_keep_their_order(runner):
    # Each call waits for all four to be running at once: run one after another, they would
    # time out at the barrier and fail.
    barrier = threading.Barrier(4, timeout=10)

    def meet(n: int) -> int:
        barrier.wait()
        time.sleep(0.01 * (4 - n))  # finish in reverse order
        return n * 10

    spec = as_tool(meet)
    calls = [call("meet", {"n": n}, f"c{n}") for n in range(4)]
    outcomes = runner.run_calls(calls, {"meet": spec})
    assert [(o.call_id, o.ok, o.content) for o in outcomes] == [
        ("c0", True, "0"),
        ("c1", True, "10"),
        ("c2", True, "20"),
        ("c3", True, "30"),
    ]


def test_sync_and_async_calls_in_one_turn(runner):
    def add(a: int, b: int) -> int:
        return a + b

    tools = {"add": as_tool(add), "fetch": as_tool(fetch)}
    calls = [call("fetch", {"url": "u"}, "1"), call("add", {"a": 1, "b": 2}, "2")]
    outcomes = runner.run_calls(calls, tools)
    assert [o.ok for o in outcomes] == [True, True]
    assert outcomes[1].content == "3"


def test_timeout_of_a_sync_tool_is_reported_and_the_turn_moves_on(runner):
    release = threading.Event()

    @tool(timeout=0.2)
    def stuck() -> str:
        release.wait(10)
        return "late"

    started = time.monotonic()
    outcome = run_one(runner, stuck)
    release.set()
    assert time.monotonic() - started < 5
    assert not outcome.ok
    assert outcome.content == "Error: stuck did not finish within 0.2 seconds."


def test_timeout_of_an_async_tool_cancels_it(runner):
    cancelled = threading.Event()

    @tool(timeout=0.2)
    async def wait_forever() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    outcome = run_one(runner, wait_forever)
    assert not outcome.ok and "did not finish within 0.2 seconds" in outcome.content
    assert cancelled.wait(5)


def test_exception_in_a_tool_gives_error_and_traceback(runner):
    def get_weather(city: str) -> str:
        raise ValueError(f"bad city {city}")

    async def aget_weather(city: str) -> str:
        raise KeyError(city)

    outcome = run_one(runner, get_weather, {"city": "Xx"})
    assert not outcome.ok
    assert outcome.content == "Error: get_weather raised ValueError: bad city Xx"
    assert outcome.error == "get_weather raised ValueError: bad city Xx"
    assert "in get_weather" in outcome.traceback
    assert 'raise ValueError(f"bad city {city}")' in outcome.traceback
    assert "_run_sync" not in outcome.traceback

    outcome = run_one(runner, aget_weather, {"city": "Yy"})
    assert outcome.content == "Error: aget_weather raised KeyError: 'Yy'"
    assert "in aget_weather" in outcome.traceback


def test_system_exit_in_a_tool_does_not_stop_the_runner(runner):
    async def quit_async() -> None:
        raise SystemExit(1)

    def quit_sync() -> None:
        raise SystemExit(2)

    assert "raised SystemExit" in run_one(runner, quit_async).content
    assert "raised SystemExit" in run_one(runner, quit_sync).content
    assert run_one(runner, fetch, {"url": "still works"}).ok


def test_confirm_refusal_and_acceptance(runner):
    ran = []
    asked = []

    @tool(confirm=True)
    def delete_file(path: str) -> str:
        ran.append(path)
        return "deleted"

    def plain(x: int) -> int:
        return x

    def confirm(spec: Tool, arguments: dict) -> bool:
        asked.append((spec.name, arguments, threading.current_thread()))
        return arguments["path"] != "/etc/passwd"

    tools = {"delete_file": as_tool(delete_file), "plain": as_tool(plain)}
    calls = [
        call("delete_file", {"path": "/etc/passwd"}, "1"),
        call("delete_file", {"path": "tmp.txt"}, "2"),
        call("plain", {"x": 1}, "3"),
    ]
    outcomes = runner.run_calls(calls, tools, confirm=confirm)
    assert [(name, args) for name, args, _ in asked] == [
        ("delete_file", {"path": "/etc/passwd"}),
        ("delete_file", {"path": "tmp.txt"}),
    ]
    assert all(thread is threading.current_thread() for _, _, thread in asked)
    assert ran == ["tmp.txt"]
    assert (outcomes[0].ok, outcomes[0].content) == (
        False,
        "The user declined to run delete_file.",
    )
    assert outcomes[1].content == "deleted" and outcomes[2].content == "1"


def test_context_variables_reach_the_tools(runner):
    # ipykernel routes a thread's print() to the right cell through the caller's context.
    cell = contextvars.ContextVar("cell", default="none")

    def sync_tool() -> str:
        return cell.get()

    async def async_tool() -> str:
        return cell.get()

    token = cell.set("cell-7")
    try:
        assert run_one(runner, sync_tool).content == "cell-7"
        assert run_one(runner, async_tool).content == "cell-7"
    finally:
        cell.reset(token)


def test_close_stops_the_loop_thread_and_the_runner_can_start_again():
    runner = ToolRunner()
    assert run_one(runner, fetch, {"url": "a"}).ok
    thread = runner._thread
    assert thread is not None and thread.is_alive()
    runner.close()
    assert not thread.is_alive()
    assert run_one(runner, fetch, {"url": "b"}).ok
    runner.close()


def test_a_sync_tool_outliving_close_does_not_restart_the_loop():
    release, ran = threading.Event(), []

    async def late() -> str:
        ran.append("late")
        return "late"

    @tool(timeout=0.05)
    def wrapper() -> Any:
        release.wait(10)
        return late()  # a sync function handing back a coroutine, after its timeout

    runner = ToolRunner()
    assert "did not finish" in run_one(runner, wrapper).content
    runner.close()
    before = set(threading.enumerate())
    release.set()
    for thread in before:
        if thread.name == "clarifai-magic-tool-wrapper":
            thread.join(10)
    assert runner._thread is None
    assert [t.name for t in set(threading.enumerate()) - before] == []
    assert ran == []


def test_close_does_not_wait_for_an_async_tool_that_ignores_cancellation():
    @tool(timeout=0.05)
    async def stubborn() -> str:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    runner = ToolRunner()
    assert "did not finish" in run_one(runner, stubborn).content
    thread = runner._thread
    runner.close()  # waits at most a moment for the tool, then stops the loop anyway
    assert thread is not None and not thread.is_alive()


def test_a_flood_of_invalid_arguments_gives_a_short_error(runner):
    def total(values: list[int]) -> int:
        return sum(values)

    outcome = run_one(runner, total, {"values": ["x"] * 10_000})
    assert not outcome.ok
    listed = [
        f"values[{i}]: Input should be a valid integer, unable to parse string as an integer"
        for i in range(10)
    ]
    assert outcome.content == (
        f"Error: invalid arguments for total: {'; '.join(listed)}; and 9990 more."
    )
    outcome = run_one(runner, total, {"values": ["x"] * 10_000}, max_result_chars=50)
    assert outcome.content.startswith("Error: invalid arguments for total: values[0]: Input")
    assert outcome.content.endswith(" characters]")
    assert len(outcome.content) < 120


def test_large_results_are_truncated_for_the_model(runner):
    def big() -> str:
        return "x" * 50

    outcome = run_one(runner, big, max_result_chars=10)
    assert outcome.content == "x" * 10 + "\n…[truncated 40 characters]"
    assert outcome.result == "x" * 50


# --- serializing results ---------------------------------------------------------------------


class Table:
    def _repr_markdown_(self) -> str:
        return "| a |\n|---|\n| 1 |"

    def __repr__(self) -> str:
        return "Table()"


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def test_serialize_result_kinds():
    assert serialize_result("plain text") == "plain text"
    assert serialize_result(None) == "null"
    assert serialize_result(3) == "3"
    assert serialize_result(True) == "true"
    assert (
        serialize_result({"city": "Bogotá", "t": [1, 2.5]}) == '{"city": "Bogotá", "t": [1, 2.5]}'
    )
    assert json.loads(serialize_result(Point(1, 2))) == {"x": 1, "y": 2, "label": ""}
    assert serialize_result(Color.RED) == '"red"'
    assert serialize_result(dt.date(2024, 1, 2)) == '"2024-01-02"'
    assert json.loads(
        serialize_result(Person(name="A", address=Address(street="s", city="c")))
    ) == {
        "name": "A",
        "address": {"street": "s", "city": "c"},
        "nickname": None,
    }
    assert serialize_result({"when": dt.datetime(2024, 1, 2, 3), "obj": Opaque()}) == (
        '{"when": "2024-01-02T03:00:00", "obj": "<Opaque>"}'
    )
    assert serialize_result(Table()) == "| a |\n|---|\n| 1 |"
    assert serialize_result(Opaque()) == "<Opaque>"


def test_serialize_result_truncates_with_a_marker():
    text = serialize_result(list(range(1000)), max_chars=20)
    full = json.dumps(list(range(1000)))
    assert text == full[:20] + f"\n…[truncated {len(full) - 20} characters]"
    assert serialize_result("short", max_chars=20) == "short"


def test_serialize_result_of_numpy_values():
    numpy = pytest.importorskip("numpy")
    assert serialize_result({"mean": numpy.float64(1.5), "v": numpy.arange(3)}) == (
        '{"mean": 1.5, "v": [0, 1, 2]}'
    )


def test_positional_only_parameters(runner):
    def f(a: int, /, b: int = 2) -> int:
        return a * 10 + b

    assert run_one(runner, f, {"a": 1}).content == "12"
    assert run_one(runner, f, {"a": 1, "b": 5}).content == "15"


def test_pydantic_is_imported_only_to_declare_tools_and_openai_only_for_strict_schemas():
    # %load_ext stays fast: the runner loads neither; declaring a tool loads pydantic (not openai).
    code = (
        "import sys, clarifai_magic, clarifai_magic.tool_runner; "
        "print(sorted(m for m in ('IPython', 'pydantic', 'openai') if m in sys.modules)); "
        "import clarifai_magic.tools; "
        "print(sorted(m for m in ('IPython', 'pydantic', 'openai') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "['pydantic']"]


def test_a_dataframe_result_reaches_the_model_as_a_markdown_table():
    import pandas as pd

    frame = pd.DataFrame({"city": ["Paris", "Lyon"], "temp": [18, 21]})
    text = serialize_result(frame)
    assert text.splitlines()[0].replace(" ", "") == "||city|temp|"
    assert "Paris" in text and "21" in text


# --- cancelling, bounds, hostile input -------------------------------------------------------


def test_keyboard_interrupt_cancels_running_tools_then_propagates(runner):
    # The kernel's Stop is a KeyboardInterrupt in the thread waiting in run_calls.
    sync_started, async_started, saw_cancel, cancelled_task = (threading.Event() for _ in range(4))
    release, log = threading.Event(), []

    def crawl() -> str:
        sync_started.set()
        give_up = time.monotonic() + 30
        while not clarifai_magic.cancelled() and time.monotonic() < give_up:
            time.sleep(0.01)
        if clarifai_magic.cancelled():
            saw_cancel.set()
        release.wait(30)  # still running when the interrupt reaches the caller
        log.append("crawl finished")
        return "crawled"

    async def watch() -> str:
        async_started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled_task.set()
            raise
        log.append("watch finished")
        return "watched"

    def interrupt_once_both_run() -> None:
        if sync_started.wait(30) and async_started.wait(30):
            _thread.interrupt_main()

    tools = {"crawl": as_tool(crawl), "watch": as_tool(watch)}
    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_calls([call("crawl", "{}", "1"), call("watch", "{}", "2")], tools)
        # The runner did not wait for the sync tool to return: it is still inside, told to stop.
        assert saw_cancel.wait(10)
        assert log == []
        assert cancelled_task.wait(10)
    finally:
        release.set()
    assert "watch finished" not in log


def test_the_cancel_event_stops_running_tools_and_skips_waiting_ones():
    crawl_started, watch_started, cancelled_task = (threading.Event() for _ in range(3))
    told, late_ran, started = [], [], []
    cancel = threading.Event()

    def quick() -> str:
        return "quick"

    def crawl() -> str:
        crawl_started.set()
        event = clarifai_magic.cancel_event()
        told.append(event is not None and event.wait(30))
        return "crawled"

    def late() -> str:
        late_ran.append(True)
        return "late"

    async def watch() -> str:
        watch_started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled_task.set()
            raise
        return "watched"

    def cancel_once_both_run() -> None:
        if crawl_started.wait(30) and watch_started.wait(30):
            cancel.set()

    tools = {f.__name__: as_tool(f) for f in (quick, crawl, late, watch)}
    calls = [call(name, "{}", name) for name in ("quick", "crawl", "late", "watch")]
    threading.Thread(target=cancel_once_both_run, daemon=True).start()
    # One thread at a time: quick runs and is collected before crawl starts; late never starts.
    with ToolRunner(max_threads=1) as runner:
        outcomes = runner.run_calls(calls, tools, cancel=cancel, on_start=started.append)
    assert [o.call_id for o in outcomes] == ["quick", "crawl", "late", "watch"]
    assert (outcomes[0].ok, outcomes[0].content) == (True, "quick")
    for outcome in outcomes[1:]:
        assert not outcome.ok and outcome.error == "cancelled"
        assert outcome.content == "Error: the user cancelled this call."
    assert sorted(started) == [0, 1, 3]
    assert late_ran == []
    assert cancelled_task.wait(10)
    for thread in threading.enumerate():
        if thread.name == "clarifai-magic-tool-crawl":
            thread.join(10)
    assert told == [True]


def test_a_sync_tool_past_its_timeout_is_told_to_stop(runner):
    told = []

    @tool(timeout=0.2)
    def slow() -> str:
        event = clarifai_magic.cancel_event()
        told.append(event is not None and event.wait(30))
        told.append(clarifai_magic.cancelled())
        return "late"

    outcome = run_one(runner, slow)
    assert outcome.content == "Error: slow did not finish within 0.2 seconds."
    for thread in threading.enumerate():
        if thread.name == "clarifai-magic-tool-slow":
            thread.join(10)
    assert told == [True, True]
    # Outside a tool call there is nothing to cancel.
    assert clarifai_magic.cancelled() is False and clarifai_magic.cancel_event() is None


def test_ten_thousand_calls_never_run_more_threads_than_the_bound():
    # Calls pass in groups of 8: a runner that ran fewer at once would break the barrier, one
    # that started more would show more threads (and peak) than 8.
    bound = 8
    barrier, lock = threading.Barrier(bound, timeout=30), threading.Lock()
    running, peak, thread_counts = [0], [0], []

    def probe(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            thread_counts.append(threading.active_count())
        barrier.wait()
        with lock:
            running[0] -= 1
        return n

    baseline = threading.active_count()
    calls = [call("probe", {"n": n}, f"c{n}") for n in range(10_000)]
    with ToolRunner(max_threads=bound) as runner:
        outcomes = runner.run_calls(calls, {"probe": as_tool(probe)})
    assert [o.content for o in outcomes] == [str(n) for n in range(10_000)]
    assert len(thread_counts) == 10_000
    assert peak[0] == bound
    assert max(thread_counts) <= baseline + bound


def test_many_async_calls_run_at_most_max_tasks_at_once():
    running, peak = [0], [0]

    async def ping(n: int) -> int:
        running[0] += 1  # all on the runner's one loop thread: no lock needed
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.001)
        running[0] -= 1
        return n

    calls = [call("ping", {"n": n}, f"c{n}") for n in range(2_000)]
    with ToolRunner(max_tasks=5) as runner:
        outcomes = runner.run_calls(calls, {"ping": as_tool(ping)})
    assert [o.content for o in outcomes] == [str(n) for n in range(2_000)]
    assert peak[0] <= 5


@pytest.mark.parametrize("depth", [65, 200, 900, 100_000])
def test_arguments_nested_too_deeply_are_refused_before_validation(runner, depth):
    ran = []

    def store(a: Any) -> str:
        ran.append(a)
        return "stored"

    def store_union(a: int | list[Any]) -> str:
        ran.append(a)
        return "stored"

    for func in (store, store_union):
        arguments = '{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
        outcome = run_one(runner, func, arguments)
        assert not outcome.ok and outcome.arguments is None
        assert outcome.content == (
            f"Error: the arguments for {func.__name__} are nested too deeply (more than 64 levels)."
        )
    assert ran == []
    # At the limit they are still fine.
    assert run_one(runner, store, '{"a": ' + "[" * 63 + "]" * 63 + "}").ok


def test_a_result_too_deep_to_write_out_is_an_error_outcome(runner):
    class Endless:
        def __repr__(self) -> str:
            return repr(self)

    def deep() -> list:
        value: list = []
        for _ in range(100_000):
            value = [value]
        return value

    def endless() -> Any:
        return Endless()

    def loop() -> dict:
        value: dict = {"name": "loop"}
        value["self"] = value
        return value

    outcome = run_one(runner, deep)
    assert not outcome.ok
    assert outcome.content == (
        "Error: the result of deep could not be turned into text "
        "(ValueError: it is nested too deeply to write out)"
    )
    outcome = run_one(runner, endless)
    assert not outcome.ok
    assert outcome.content.startswith("Error: the result of endless could not be turned into text")
    # JSON can't write a loop; Python's repr shows where it closes.
    outcome = run_one(runner, loop)
    assert outcome.ok and outcome.content == "{'name': 'loop', 'self': {...}}"
    with pytest.raises(ValueError, match="nested too deeply"):
        serialize_result(deep())


def test_a_huge_traceback_keeps_the_tools_frame_and_the_error():
    def shout(n: int) -> str:
        raise ValueError("A" * 100_000 + " END")

    with ToolRunner() as runner:
        outcome = run_one(runner, shout, {"n": 1})
    assert outcome.error == f"shout raised ValueError: {'A' * 1000}…"
    assert len(outcome.traceback) <= 20_100
    assert outcome.traceback.startswith("Traceback (most recent call last):\n…[")
    assert 'raise ValueError("A" * 100_000 + " END")' in outcome.traceback
    assert "ValueError: AAAA" in outcome.traceback
