"""The Gemini door's function calling pieces on their own (no database, no server): Google's
Schema as JSON Schema, `functionCallingConfig` as the tool choice, a conversation's calls and
results matched, an answer's calls as `functionCall` parts, and streamed pieces gathered."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import GatewayError
from gateway.gemini import _CallPieces
from gateway.gemini_parse import parse_contents
from gateway.gemini_tools import (
    CallUnreadable,
    function_call_part,
    json_schema_of,
    tool_choice_of,
    tools_of,
)
from providers.adapters.types import Message, Tool, ToolCall, ToolCallDelta, ToolChoice

THREE = (Tool(name="a"), Tool(name="b"), Tool(name="c"))


def test_googles_schema_becomes_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "max_items": {"type": "ARRAY", "items": {"type": "string"}, "max_items": 3},
            "when": {"type": "STRING", "format": "date-time", "nullable": True},
            "either": {"any_of": [{"type": "INTEGER"}, {"type": "BOOLEAN"}], "nullable": True},
            "kind": {"type": "STRING", "enum": ["x", "y"], "format": "enum"},
            "anything": {"description": "any value", "nullable": True},
        },
        "required": ["max_items"],
        "property_ordering": ["max_items", "when", "either", "kind"],
    }

    assert json_schema_of(schema, "parameters") == {
        "type": "object",
        "properties": {
            # A property's name is the caller's own: never renamed.
            "max_items": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}, {"type": "null"}]},
            "kind": {"type": "string", "enum": ["x", "y"], "format": "enum"},
            "anything": {"anyOf": [{"description": "any value"}, {"type": "null"}]},
        },
        "required": ["max_items"],
        "propertyOrdering": ["max_items", "when", "either", "kind"],
    }


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(GatewayError) as refused:
        call(*args, **kwargs)
    return refused.value.message


def test_a_schema_field_google_does_not_know_is_refused_at_its_path() -> None:
    schema = {"type": "OBJECT", "properties": {"a": {"type": "STRING", "const": "x"}}}

    assert refusal(json_schema_of, schema, "tools[0].functionDeclarations[0].parameters") == (
        "tools[0].functionDeclarations[0].parameters.properties.a.const: is not a field of this "
        "request (Cannot find field)"
    )


@pytest.mark.parametrize(
    ("config", "tools", "choice"),
    [
        ({"mode": "ANY", "allowedFunctionNames": ["c", "a"]}, ("a", "c"), ToolChoice("required")),
        (
            {"mode": "ANY", "allowedFunctionNames": ["a", "b", "c"]},
            ("a", "b", "c"),
            ToolChoice("required"),
        ),
        ({"mode": "ANY"}, ("a", "b", "c"), ToolChoice("required")),
        (
            {"mode": "ANY", "allowedFunctionNames": ["b"]},
            ("a", "b", "c"),
            ToolChoice("function", "b"),
        ),
        ({"mode": "NONE"}, ("a", "b", "c"), ToolChoice("none")),
        ({"mode": "AUTO"}, ("a", "b", "c"), ToolChoice("auto")),
        ({}, ("a", "b", "c"), None),
    ],
    ids=["any-of-two", "any-of-all", "any", "any-one", "none", "auto", "unspecified"],
)
def test_function_calling_config_as_the_tool_choice(
    config: dict[str, Any], tools: tuple[str, ...], choice: ToolChoice | None
) -> None:
    offered, chosen = tool_choice_of({"functionCallingConfig": config}, THREE)

    assert tuple(tool.name for tool in offered) == tools
    assert chosen == choice


def test_declarations_of_several_tools_are_one_list() -> None:
    raw = [
        {"function_declarations": [{"name": "a", "description": "A"}]},
        {"functionDeclarations": [{"name": "b", "parametersJsonSchema": {"type": "object"}}]},
    ]

    assert tools_of(raw) == (
        Tool(name="a", description="A"),
        Tool(name="b", parameters={"type": "object"}),
    )


def test_results_answer_calls_by_id_else_by_name_in_order() -> None:
    contents = [
        {"parts": [{"text": "Weather in Paris and Rome, time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                {"function_call": {"id": "t-1", "name": "time"}, "thoughtSignature": "c2ln"},
            ],
        },
        {
            "role": "function",
            "parts": [
                {"functionResponse": {"id": "t-1", "name": "time", "response": {"t": "14:05"}}},
                {"functionResponse": {"name": "weather", "response": {"c": 18}}},
                {"function_response": {"name": "weather", "response": {"c": 21}}},
            ],
        },
    ]

    assert parse_contents(contents) == (
        Message(role="user", content="Weather in Paris and Rome, time in Paris?"),
        Message(
            role="assistant",
            content="",
            tool_calls=(
                ToolCall(id="call_1_0", name="weather", arguments='{"city":"Paris"}'),
                ToolCall(id="call_1_1", name="weather", arguments='{"city":"Rome"}'),
                # The part's thought signature ("c2ln") rides in the call's id.
                ToolCall(id="t-1__thought__YzJsbg", name="time", arguments="{}"),
            ),
        ),
        Message(role="tool", content='{"t":"14:05"}', tool_call_id="t-1__thought__YzJsbg"),
        Message(role="tool", content='{"c":18}', tool_call_id="call_1_0"),
        Message(role="tool", content='{"c":21}', tool_call_id="call_1_1"),
    )


def test_a_thought_signature_that_is_not_a_string_is_refused() -> None:
    called = {
        "role": "model",
        "parts": [{"functionCall": {"name": "f"}, "thoughtSignature": 7}],
    }

    assert refusal(parse_contents, [{"parts": [{"text": "?"}]}, called]) == (
        "contents[1].parts[0].thoughtSignature: must be a string"
    )


def test_a_third_result_for_two_calls_is_refused() -> None:
    called = {
        "role": "model",
        "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "f"}}],
    }
    result = {"functionResponse": {"name": "f", "response": {}}}

    assert refusal(
        parse_contents, [{"parts": [{"text": "?"}]}, called, {"parts": [result] * 3}]
    ) == (
        "contents[2].parts[2].functionResponse.name: answers no open functionCall to 'f' of the "
        "model turn before it"
    )


def test_an_answers_call_is_a_function_call_part() -> None:
    call = ToolCall(id="call_1", name="weather", arguments='{"city":"Paris"}')

    assert function_call_part(call) == {
        "functionCall": {"id": "call_1", "name": "weather", "args": {"city": "Paris"}}
    }
    assert function_call_part(ToolCall(id="c", name="now", arguments="")) == {
        "functionCall": {"id": "c", "name": "now", "args": {}}
    }
    with pytest.raises(CallUnreadable) as unreadable:
        function_call_part(ToolCall(id="c", name="weather", arguments='["Paris"]'))
    assert str(unreadable.value) == (
        "The model called weather with arguments that are not a JSON object: '[\"Paris\"]'"
    )


def test_streamed_pieces_are_whole_calls_once_the_next_starts() -> None:
    pieces = _CallPieces()

    assert pieces.add(()) == ()
    assert pieces.add((ToolCallDelta(index=0, id="c0", name="weather"),)) == ()
    assert pieces.add((ToolCallDelta(index=0, arguments='{"city":'),)) == ()
    assert pieces.add((ToolCallDelta(index=0, arguments='"Paris"}'),)) == ()
    assert pieces.add((ToolCallDelta(index=1, id="c1", name="time", arguments="{}"),)) == (
        ToolCall(id="c0", name="weather", arguments='{"city":"Paris"}'),
    )
    assert pieces.rest() == (ToolCall(id="c1", name="time", arguments="{}"),)
    assert pieces.rest() == ()
