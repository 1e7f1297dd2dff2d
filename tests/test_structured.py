"""Structured answers: schemas, response_format, pulling JSON out of replies, validation."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pydantic
import pytest

from clarifai_magic.client import rejects_response_format
from clarifai_magic.structured import (
    FieldError,
    SchemaError,
    StructuredResult,
    extract_json,
    instruction_for,
    parse_json_answer,
    parse_structured,
    response_format_for,
    schema_for,
)


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"


@dataclass
class Line:
    name: str
    price: float
    qty: int = 1


@dataclass
class Invoice:
    """An invoice read off a scanned page."""

    number: str = field(metadata={"description": "as printed"})
    lines: list[Line]
    currency: Currency
    status: Literal["paid", "open"]
    note: Optional[str] = None  # noqa: UP045 (the typing spelling must work too)
    tags: list[str] = field(default_factory=list)


class PLine(pydantic.BaseModel):
    name: str
    price: float


class PInvoice(pydantic.BaseModel):
    """An invoice."""

    number: str
    lines: list[PLine]
    first: PLine = pydantic.Field(description="the first line")
    total: float = 0.0


def objects(node: Any) -> list[dict]:
    """Every schema node that declares properties, anywhere in ``node``."""
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found += objects(value)
    elif isinstance(node, list):
        for value in node:
            found += objects(value)
    return found


# ---------------------------------------------------------------- schemas


def test_dataclass_schema():
    # The same schema a tool parameter of this type gets: nested classes written out in place,
    # defaults shown, no title.
    assert schema_for(Invoice) == {
        "type": "object",
        "description": "An invoice read off a scanned page.",
        "properties": {
            "number": {"type": "string", "description": "as printed"},
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "price": {"type": "number"},
                        "qty": {"type": "integer", "default": 1},
                    },
                    "required": ["name", "price"],
                },
            },
            "currency": {"enum": ["EUR", "USD"], "type": "string"},
            "status": {"enum": ["paid", "open"], "type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        },
        "required": ["number", "lines", "currency", "status"],
    }


def test_dataclass_schema_covers_dicts_tuples_unions_and_any():
    @dataclass
    class Misc:
        counts: dict[str, int]
        pair: tuple[int, str]
        many: tuple[float, ...]
        either: int | str
        anything: Any
        flag: bool

    props = schema_for(Misc)["properties"]
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["pair"] == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert props["many"] == {"type": "array", "items": {"type": "number"}}
    assert props["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["anything"] == {}
    assert props["flag"] == {"type": "boolean"}


def test_recursive_dataclass_schema_terminates_and_refers_to_itself():
    schema = schema_for(Node)
    assert schema["properties"]["children"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Node"},
        "default": [],
    }
    assert schema["$defs"]["Node"]["properties"]["label"] == {"type": "string"}


@dataclass
class Node:
    label: str
    children: list[Node] = field(default_factory=list)


def test_pydantic_schema_is_the_models_own():
    assert schema_for(PInvoice) == PInvoice.model_json_schema()


class Thing:
    """A plain class: pydantic has no schema for it."""


def test_unsupported_field_type_names_the_field():
    @dataclass
    class Meeting:
        when: Thing

    with pytest.raises(SchemaError, match=r"Meeting\.when"):
        schema_for(Meeting)


@pytest.mark.parametrize("obj", [dict, 42, "Invoice", Line(name="a", price=1.0)])
def test_schema_needs_a_model_class_or_dataclass(obj):
    with pytest.raises(SchemaError, match="pydantic model class or a dataclass"):
        schema_for(obj)


# ---------------------------------------------------------------- response_format


def test_response_format_for_dataclass_is_strict_everywhere():
    rf = response_format_for(Invoice)
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == "Invoice"
    assert rf["json_schema"]["strict"] is True
    schema = rf["json_schema"]["schema"]
    assert len(objects(schema)) == 2  # Invoice and Line
    for obj in objects(schema):
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    # A field that was optional becomes nullable; null means "the default" (as for tools).
    assert schema["properties"]["lines"]["items"]["properties"]["qty"] == {
        "anyOf": [{"type": "integer"}, {"type": "null"}],
        "default": 1,
    }


def test_response_format_for_pydantic_makes_optionals_nullable_and_inlines_described_refs():
    schema = response_format_for(PInvoice)["json_schema"]["schema"]
    assert schema["properties"]["total"] == {
        "anyOf": [{"type": "number", "title": "Total"}, {"type": "null"}],
        "default": 0.0,
    }
    assert json.dumps(schema).count('"default"') == 1
    first = schema["properties"]["first"]
    assert "$ref" not in first
    assert first["description"] == "the first line"
    assert first["properties"]["price"]["type"] == "number"
    for obj in objects(schema):
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])


def test_response_format_does_not_change_the_plain_schema():
    before = json.dumps(schema_for(PInvoice), sort_keys=True)
    response_format_for(PInvoice)
    assert json.dumps(schema_for(PInvoice), sort_keys=True) == before


def test_open_dict_field_makes_the_format_non_strict():
    @dataclass
    class Counts:
        counts: dict[str, int]

    rf = response_format_for(Counts)
    assert rf["json_schema"]["strict"] is False


def test_non_strict_response_format_sends_the_schema_as_is():
    rf = response_format_for(Invoice, strict=False)
    assert rf["json_schema"] == {"name": "Invoice", "schema": schema_for(Invoice), "strict": False}


def test_response_format_name_fits_openais_pattern():
    Bad = type("Façture Ü", (pydantic.BaseModel,), {"__annotations__": {"x": int}})
    assert response_format_for(Bad)["json_schema"]["name"] == "Fa_ture__"


def test_instruction_asks_for_only_json_and_carries_the_schema():
    text = instruction_for(Invoice)
    assert "only one JSON value" in text
    assert "no Markdown code fences" in text
    schema_text = text.split("JSON schema:\n", 1)[1]
    assert json.loads(schema_text) == schema_for(Invoice)


# ---------------------------------------------------------------- extract_json


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("```\n[1, 2]\n```", "[1, 2]"),
        ('Here you go:\n```json\n{"a": 1}\n```\nAnything else?', '{"a": 1}'),
        ('Sure! The result is {"a": {"b": [1, 2]}} as requested.', '{"a": {"b": [1, 2]}}'),
        ('Notes [see below]: {"a": 1}', '{"a": 1}'),
        ('{"text": "a } and a { inside"}', '{"text": "a } and a { inside"}'),
        ('<think>maybe {"a": 0}?</think>{"a": 2}', '{"a": 2}'),
        ("```python\nprint(1)\n```\n```json\n[3]\n```", "[3]"),
        ('```json\n{"a": 1}', '{"a": 1}'),
        ("  42\n", "42"),
        ('Broken: {"a": 1,} done', '{"a": 1,}'),
    ],
)
def test_extract_json(reply, expected):
    assert extract_json(reply) == expected


def test_a_reply_cut_short_is_an_incomplete_answer_not_its_first_inner_object():
    @dataclass
    class Item:
        a: int

    @dataclass
    class Report:
        title: str
        items: list[Item]

    full = json.dumps({"title": "t", "items": [{"a": i} for i in range(300)]})
    half = full[: len(full) // 2].rstrip()
    cut = "Here is the report:\n" + half  # the token limit hit mid-answer
    assert extract_json(cut) == half
    for result in (parse_json_answer(cut), parse_structured(cut, Report)):
        assert result.value is None and not result.ok
        [error] = result.errors
        assert error.message.startswith("Not valid JSON: it is incomplete (unterminated")
    cut_in_string = parse_json_answer('{"title": "half a sen')
    assert "incomplete" in cut_in_string.errors[0].message


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("{ " * 20_000, "{ " * 19_999 + "{"),  # 40 KB of openers that never close
        ("[" * 40_000, "[" * 40_000),  # deeper than the JSON parser can nest
        ("[x] " * 10_000 + '{"a": 1}', '{"a": 1}'),  # many balanced non-JSON brackets first
    ],
)
def test_extract_json_on_pathological_replies(reply, expected):
    assert extract_json(reply) == expected
    assert parse_json_answer(reply).ok is (expected == '{"a": 1}')


# ---------------------------------------------------------------- parse_structured: dataclass

GOOD = {
    "number": "A-17",
    "lines": [{"name": "tea", "price": 3}, {"name": "cake", "price": 4.5, "qty": 2}],
    "currency": "EUR",
    "status": "paid",
    "unexpected": "ignored",
}


def test_dataclass_reply_becomes_an_instance():
    reply = f"Here is the invoice:\n```json\n{json.dumps(GOOD)}\n```"
    result = parse_structured(reply, Invoice)
    assert result.ok and result.errors == []
    assert result.raw == reply
    assert result.value == Invoice(
        number="A-17",
        lines=[Line("tea", 3.0), Line("cake", 4.5, 2)],
        currency=Currency.EUR,
        status="paid",
    )
    assert isinstance(result.value.lines[0].price, float)


def test_dataclass_reply_errors_name_every_failed_field():
    bad = {
        "lines": [{"name": "tea", "price": "cheap"}, {"price": 2, "qty": 1.5}],
        "currency": "GBP",
        "status": "PAID",
        "note": 5,
        "tags": "x",
    }
    result = parse_structured(json.dumps(bad), Invoice)
    assert result.value is None and not result.ok
    assert result.raw == json.dumps(bad)
    assert result.errors == [
        FieldError("number", "Field required"),
        FieldError(
            "lines[0].price", "Input should be a valid number, unable to parse string as a number"
        ),
        FieldError("lines[1].name", "Field required"),
        FieldError(
            "lines[1].qty", "Input should be a valid integer, got a number with a fractional part"
        ),
        FieldError("currency", "Input should be 'EUR' or 'USD'"),
        FieldError("status", "Input should be 'paid' or 'open'"),
        FieldError("note", "Input should be a valid string"),
        FieldError("tags", "Input should be a valid array"),
    ]
    assert result.describe_errors().splitlines()[1] == (
        "lines[0].price: Input should be a valid number, unable to parse string as a number"
    )


def test_optional_nested_dataclass_reports_inner_paths():
    @dataclass
    class Wrapper:
        line: Optional[Line]  # noqa: UP045
        by_name: dict[str, Line]

    ok = parse_structured('{"line": null, "by_name": {"x": {"name": "x", "price": 1}}}', Wrapper)
    assert ok.value == Wrapper(None, {"x": Line("x", 1.0)})
    bad = parse_structured('{"line": {"name": 1}, "by_name": {"x": {"name": "x"}}}', Wrapper)
    assert [e.path for e in bad.errors] == ["line.name", "line.price", "by_name.x.price"]


def test_unions_tuples_and_booleans_are_checked():
    @dataclass
    class Misc:
        either: int | str
        pair: tuple[int, str]
        flag: bool

    ok = parse_structured('{"either": "x", "pair": [1, "a"], "flag": true}', Misc)
    assert ok.value == Misc("x", (1, "a"), True)
    bad = parse_structured('{"either": [1], "pair": [1, 2, 3], "flag": "maybe"}', Misc)
    assert bad.errors == [
        FieldError("either.int", "Input should be a valid integer"),
        FieldError("either.str", "Input should be a valid string"),
        FieldError("pair", "Tuple should have at most 2 items after validation, not 3"),
        FieldError("flag", "Input should be a valid boolean, unable to interpret input"),
    ]


def test_post_init_validation_becomes_a_field_error():
    @dataclass
    class Positive:
        amount: float

        def __post_init__(self) -> None:
            if self.amount <= 0:
                raise ValueError("amount must be positive")

    result = parse_structured('{"amount": -1}', Positive)
    assert result.errors == [FieldError("", "Value error, amount must be positive")]


def test_reply_that_is_not_json_keeps_the_text():
    result = parse_structured("I cannot read this invoice, sorry.", Invoice)
    assert result.value is None
    assert result.raw == "I cannot read this invoice, sorry."
    assert len(result.errors) == 1
    assert result.errors[0].path == ""
    assert result.errors[0].message.startswith("Not valid JSON: ")
    assert result.describe_errors().startswith("(reply): Not valid JSON")


def test_reply_of_the_wrong_json_kind():
    assert parse_structured("[1, 2]", Invoice).errors == [
        FieldError("", "Input should be an object")
    ]


def test_parse_structured_refuses_other_classes():
    with pytest.raises(SchemaError):
        parse_structured("{}", dict)


# ---------------------------------------------------------------- parse_structured: pydantic


def test_pydantic_reply_becomes_a_model():
    reply = '```json\n{"number": "9", "lines": [], "first": {"name": "a", "price": 2}}\n```'
    result = parse_structured(reply, PInvoice)
    assert result.ok
    assert result.value == PInvoice(number="9", lines=[], first=PLine(name="a", price=2))


def test_pydantic_errors_carry_field_paths():
    reply = '{"lines": [{"name": "a", "price": "cheap"}], "first": {"price": 1}}'
    result = parse_structured(reply, PInvoice)
    assert result.value is None and result.raw == reply
    assert [e.path for e in result.errors] == ["number", "lines[0].price", "first.name"]
    assert result.errors[0].message == "Field required"


# ---------------------------------------------------------------- -f json


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ("The numbers: [1, 2, 3].", [1, 2, 3]),
        ("42", 42),
        ('"yes"', "yes"),
    ],
)
def test_json_answer_is_parsed(reply, value):
    result = parse_json_answer(reply)
    assert result == StructuredResult(value, reply, [])


def test_json_null_is_a_valid_answer():
    result = parse_json_answer("null")
    assert result.ok and result.value is None


def test_json_answer_that_is_not_json():
    result = parse_json_answer("Sorry, no data.")
    assert result.value is None and result.raw == "Sorry, no data."
    assert [e.path for e in result.errors] == [""]
    assert "Not valid JSON" in result.errors[0].message


# ---------------------------------------------------------------- falling back


@pytest.mark.parametrize(
    ("message", "status", "expected"),
    [
        ("Invalid parameter: 'response_format' of type 'json_schema' is not supported", 400, True),
        ("json_schema response format is not supported with this model", 422, True),
        ("Model prediction failed: unexpected keyword argument 'response_format'", 500, True),
        ("Model prediction failed: unexpected keyword argument 'response_format'", None, True),
        (
            "Error code: 422 - {'detail': [{'type': 'extra_forbidden', 'loc': ['body', "
            "'response_format'], 'msg': 'Extra inputs are not permitted'}]}",
            422,
            True,
        ),
        ("guided_json is not available for this runner", 400, True),
        ("Structured output is unsupported by this model", 400, True),
        # Saying something is not supported without naming the format is about something else.
        ("This feature is not supported for this model", 400, False),
        ("Extra inputs are not permitted", 422, False),
        ("tool_choice 'required' is not supported", 400, False),
        ("This feature is not supported for this model", None, False),
        ("Invalid API key (response_format)", 401, False),
        ("Rate limit reached", 429, False),
        ("max_tokens is too large", 400, False),
        ("Internal server error", 500, False),
    ],
)
def test_rejects_response_format(message, status, expected):
    assert rejects_response_format(message, status) is expected
