"""The shared type/schema layer: one behaviour for tool arguments and ``--schema`` answers.

Recursive types, strict-mode nulls meaning "the default", dates, unions and the schema itself
are checked through both public entry points (``as_tool``/``ToolRunner`` and
``response_format_for``/``parse_structured``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, make_dataclass
from enum import Enum
from typing import Annotated, Any

import pydantic
import pytest
from typing_extensions import NotRequired, TypedDict

from clarifai_magic.schema import FieldError, SchemaError, json_schema, strict_schema
from clarifai_magic.stream import ToolCall
from clarifai_magic.structured import parse_structured, response_format_for, schema_for
from clarifai_magic.tool_calls import deeper_than
from clarifai_magic.tools import ToolRunner, as_tool, tool


@dataclass
class Tree:
    label: str
    children: list[Tree] = field(default_factory=list)


class Guest(TypedDict):
    name: str
    plus_one: NotRequired[bool]


@dataclass
class Meeting:
    """A meeting in the calendar.

    Attributes:
        room: Where it happens.
    """

    when: dt.datetime
    room: Annotated[str, "Room name, as on the door"]
    guests: list[Guest]
    minutes: int = 30


@dataclass
class Circle:
    radius: float


@dataclass
class Square:
    radius: float
    side: float


class PItem(pydantic.BaseModel):
    name: str
    qty: int = 1


class POrder(pydantic.BaseModel):
    items: list[PItem]
    note: str = ""


class Unit(Enum):
    KG = "kg"
    LB = "lb"


class StrictWeight(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)

    unit: Unit
    on: dt.date


def run(func: Any, arguments: dict[str, Any]):
    spec = as_tool(func)
    with ToolRunner() as runner:
        call = ToolCall(id="c1", name=spec.name, arguments=json.dumps(arguments))
        [outcome] = runner.run_calls([call], {spec.name: spec})
    return outcome


def test_a_dataclass_has_the_same_schema_as_answer_and_as_tool_parameter():
    def book(meeting: Meeting) -> None:
        pass

    schema = schema_for(Meeting)
    assert as_tool(book).parameters["properties"]["meeting"] == schema
    assert schema["properties"]["when"] == {"type": "string", "format": "date-time"}
    assert schema["properties"]["room"]["description"] == "Room name, as on the door"
    assert schema["properties"]["guests"]["items"]["required"] == ["name"]
    assert schema["properties"]["minutes"] == {"type": "integer", "default": 30}


def test_dates_typeddicts_and_annotated_fields_in_a_structured_answer():
    reply = {
        "when": "2024-05-01T10:00:00Z",
        "room": "B2",
        "guests": [{"name": "Ana", "plus_one": True}, {"name": "Bo"}],
    }
    result = parse_structured(json.dumps(reply), Meeting)
    assert result.ok, result.describe_errors()
    assert result.value == Meeting(
        when=dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone.utc),
        room="B2",
        guests=[{"name": "Ana", "plus_one": True}, {"name": "Bo"}],
    )
    bad = parse_structured(json.dumps({**reply, "when": "tomorrow"}), Meeting)
    assert [str(e) for e in bad.errors] == [
        "when: Input should be a valid datetime or date, input is too short"
    ]


def test_recursive_dataclass_answer_validates_and_converts_at_every_depth():
    reply = {"label": "root", "children": [{"label": "a", "children": [{"label": "b"}]}]}
    result = parse_structured(json.dumps(reply), Tree)
    assert result.value == Tree("root", [Tree("a", [Tree("b")])])
    assert isinstance(result.value.children[0].children[0], Tree)
    bad = parse_structured('{"label": "r", "children": [{"children": [{"label": 3}]}]}', Tree)
    assert bad.errors == [
        FieldError("children[0].label", "Field required"),
        FieldError("children[0].children[0].label", "Input should be a valid string"),
    ]
    strict = response_format_for(Tree)["json_schema"]
    assert strict["strict"] is True
    assert strict["schema"]["$defs"]["Tree"]["additionalProperties"] is False


def test_recursive_types_are_refused_as_tool_parameters_only():
    assert json_schema(Tree, recursive=True)["$defs"]["Tree"]["required"] == ["label"]
    with pytest.raises(SchemaError, match="recursive"):
        json_schema(Tree)


def test_strict_nulls_mean_defaults_in_dataclass_answers():
    reply = {
        "when": "2024-05-01T10:00:00",
        "room": "B2",
        "guests": [{"name": "Bo", "plus_one": None}],
        "minutes": None,
    }
    result = parse_structured(json.dumps(reply), Meeting)
    assert result.ok, result.describe_errors()
    assert result.value.minutes == 30
    assert result.value.guests == [{"name": "Bo"}]


def test_strict_nulls_mean_defaults_in_nested_pydantic_answers_and_arguments():
    schema = response_format_for(POrder)["json_schema"]["schema"]
    assert schema["$defs"]["PItem"]["required"] == ["name", "qty"]
    reply = '{"items": [{"name": "tea", "qty": null}], "note": null}'
    assert parse_structured(reply, POrder).value == POrder(items=[PItem(name="tea")], note="")

    @tool(strict=True)
    def place(order: POrder) -> str:
        return f"{order.items[0].qty} x {order.items[0].name}, note {order.note!r}"

    outcome = run(place, {"order": json.loads(reply)})
    assert outcome.ok, outcome.content
    assert outcome.content == "1 x tea, note ''"


def test_a_required_null_is_still_an_error():
    result = parse_structured('{"label": null}', Tree)
    assert result.errors == [FieldError("label", "Input should be a valid string")]


def test_union_of_dataclasses_prefers_the_exact_fit():
    def draw(shape: Circle | Square) -> str:
        return type(shape).__name__

    assert run(draw, {"shape": {"radius": 1}}).content == "Circle"
    assert run(draw, {"shape": {"radius": 1, "side": 2}}).content == "Square"

    @dataclass
    class Drawing:
        shape: Circle | Square

    reply = '{"shape": {"radius": 1, "side": 2}}'
    assert parse_structured(reply, Drawing).value == Drawing(Square(1.0, 2.0))
    # Answers may carry keys no class declares: a class that fits but for them is taken.
    reply = '{"shape": {"radius": 1, "color": "red"}}'
    assert parse_structured(reply, Drawing).value == Drawing(Circle(1.0))


@pytest.mark.parametrize("annotation", [dict[str, int], Any, list])
def test_what_strict_mode_cannot_express_is_sent_non_strict(annotation):
    Loose = make_dataclass("Loose", [("value", annotation)])
    assert response_format_for(Loose)["json_schema"]["strict"] is False
    with pytest.raises(SchemaError, match="strict mode"):
        strict_schema(schema_for(Loose))


@dataclass
class Counts:
    by_id: dict[int, str]


def test_non_string_dict_keys_are_read_from_json_strings():
    assert parse_structured('{"by_id": {"7": "seven"}}', Counts).value == Counts({7: "seven"})
    bad = parse_structured('{"by_id": {"x": "ex"}}', Counts)
    assert [e.path for e in bad.errors] == ["by_id.x.[key]"]

    def name(by_id: dict[int, str]) -> str:
        return by_id[7]

    assert run(name, {"by_id": {"7": "seven"}}).content == "seven"


def test_strict_pydantic_models_take_dates_and_enums_as_json_spells_them():
    reply = '{"unit": "kg", "on": "2024-01-02"}'
    expected = StrictWeight(unit=Unit.KG, on=dt.date(2024, 1, 2))
    assert parse_structured(reply, StrictWeight).value == expected

    def weigh(weight: StrictWeight) -> str:
        return f"{weight.unit.name} {weight.on.isoformat()}"

    assert run(weigh, {"weight": json.loads(reply)}).content == "KG 2024-01-02"


@dataclass
class Cash:
    amount: float
    currency: str = "USD"


@dataclass
class Card:
    last4: str


class PCash(pydantic.BaseModel):
    amount: float
    currency: str = "USD"


class PCard(pydantic.BaseModel):
    last4: str


class PPayment(pydantic.BaseModel):
    method: PCash | PCard


def test_strict_nulls_inside_a_union_of_classes_mean_defaults():
    # Strict mode asks for every property, nullable if optional: exactly this reply.
    @tool(strict=True)
    def pay(method: Cash | Card) -> str:
        return repr(method)

    sent = {"method": {"amount": 5, "currency": None}}
    strict = as_tool(pay).schema()["function"]["parameters"]["properties"]["method"]["anyOf"][0]
    assert strict["required"] == ["amount", "currency"]
    outcome = run(pay, sent)
    assert outcome.ok, outcome.content
    assert outcome.content == "Cash(amount=5.0, currency='USD')"
    assert run(pay, {"method": {"last4": "4242"}}).content == "Card(last4='4242')"

    @dataclass
    class Order:
        payment: Cash | Card

    assert response_format_for(Order)["json_schema"]["strict"] is True
    reply = json.dumps({"payment": sent["method"]})
    assert parse_structured(reply, Order).value == Order(Cash(5.0))
    assert parse_structured(json.dumps(sent), PPayment).value == PPayment(method=PCash(amount=5))


def test_a_union_of_classes_reports_what_each_class_found_wrong():
    def pay(method: Cash | Card) -> str:
        return "paid"

    outcome = run(pay, {"method": {"amount": "five"}})
    assert outcome.content.startswith(
        "Error: invalid arguments for pay: method.Cash.amount: Input should be a valid number, "
        "unable to parse string as a number; method.Card.last4: Field required;"
    )
    outcome = run(pay, {"method": {"last4": 4242}})
    assert "method.Card.last4: Input should be a valid string" in outcome.content
    outcome = run(pay, {"method": "cash"})
    assert outcome.content == (
        "Error: invalid arguments for pay: method.Cash: Input should be an object; "
        "method.Card: Input should be an object."
    )
    assert "five" not in run(pay, {"method": {"amount": "five"}}).content  # inputs not echoed


def test_a_long_list_of_union_items_converts_each_to_its_class():
    def count(shapes: list[Circle | Square]) -> str:
        return ",".join(type(s).__name__[0] for s in shapes)

    shapes = [{"radius": 1}, {"radius": 1, "side": 2}] * 500
    assert run(count, {"shapes": shapes}).content == ",".join("CS" * 500)


def _tree_json(depth: int) -> str:
    # Written out by hand: json.dumps itself can't go this deep.
    opening = "".join(f'{{"label": "{level}", "children": [' for level in range(depth))
    return opening + "]}" * depth


def test_a_structured_answer_too_deep_to_convert_is_an_error_not_a_crash():
    # Reading, checking and converting walk the value recursively; somewhere in this range each
    # runs out of stack, and the answer must then be an error, never a RecursionError.
    for depth in range(50, 600, 10):
        result = parse_structured(_tree_json(depth), Tree)
        if result.ok:
            node, levels = result.value, 1
            while node.children:
                node, levels = node.children[0], levels + 1
            assert levels == depth
        else:
            assert result.value is None
            [error] = result.errors
            assert "nested too deeply" in error.message
    assert not parse_structured(_tree_json(600), Tree).ok


def test_deeper_than_counts_levels_at_any_depth():
    assert deeper_than({"a": [[1]]}, 3) is False
    assert deeper_than({"a": [[1]]}, 2) is True
    assert deeper_than({"a": 1, "b": "x"}, 1) is False
    assert deeper_than([], 0) is True and deeper_than(5, 0) is False
    endless: list[Any] = []
    for _ in range(100_000):
        endless = [endless]
    assert deeper_than(endless, 64) is True
    assert deeper_than(endless, 100_001) is False
