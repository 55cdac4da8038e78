"""A `/v1/responses` body, checked field by field, as the chat completions body the chat door's
parser reads (`parse_chat_request`): `input` items as chat messages (a `function_call` an
assistant turn's tool call, a `function_call_output` a `tool` message), function `tools`,
`tool_choice` and `text.format` in their chat completions form. What the response object echoes
is kept in the Responses form. A field no answer could honour is refused here, named as the
request put it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.openai_parse import TOOL_CHOICES, TOOL_NAME
from gateway.refusals import field_refused
from routing.validation import FieldInvalid, nul_check

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text")
ITEM_TYPES = "messages, function_call and function_call_output"
# Read here, or passed to the chat parser as they are (the gateway's extensions).
READ_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "metadata",
        "user",
        "store",
        "previous_response_id",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "cache",
        "task_type",
        "fallback_chain",
    }
)
NO_EFFECT_FIELDS = frozenset(
    {"service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
)
# Fields that would change the answer: accepted only at the value that changes nothing.
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "reasoning": (None, {}),
    "include": (None, []),
    "truncation": (None, "disabled"),
    "background": (None, False),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "prompt": (None,),
    "conversation": (None,),
    "stream_options": (None,),
}
FUNCTION_TOOL_FIELDS = ("type", "name", "description", "parameters", "strict")
JSON_SCHEMA_FIELDS = ("type", "name", "schema", "description", "strict")
TOOL_CHOICE_FORMS = '"auto", "none", "required" or {"type": "function", "name": …}'


@dataclass(frozen=True)
class ResponseAsk:
    """What a Responses body asks, before its conversation is looked up. `input` is chat
    messages; `chat` the chat completions fields that tools and `text.format` become; `tools`,
    `tool_choice`, `parallel_tool_calls` and `text` what the response object echoes; `outputs`
    each `function_call_output` item's place in `input` and its `call_id`."""

    body: dict[str, Any]
    input: list[dict[str, Any]]
    instructions: str | None
    previous_response_id: str | None
    store: bool
    stream: bool
    chat: dict[str, Any]
    tools: list[dict[str, Any]]
    tool_choice: Any
    parallel_tool_calls: bool
    text: dict[str, Any]
    outputs: tuple[tuple[int, str], ...] = ()


def _neutral(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any((value == n and type(value) is not bool) or value is n for n in allowed)


def _unknown_check(item: dict[str, Any], known: tuple[str, ...], at: str) -> None:
    for name in item:
        if name not in known:
            raise field_refused(f"{at}.{name}", "unknown field")


def _name(value: Any, at: str) -> str:
    if not isinstance(value, str) or not TOOL_NAME.fullmatch(value):
        raise field_refused(at, "must be 1 to 64 letters, digits, underscores or dashes")
    return value


def _optional(item: dict[str, Any], name: str, kind: type, at: str, what: str) -> Any:
    value = item.get(name)
    if value is not None and not isinstance(value, kind):
        raise field_refused(f"{at}.{name}", f"must be {what}")
    return value


def _text_format(raw: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`text` as echoed, and the chat `response_format` its format asks for (None for text)."""
    if raw is None:
        return {"format": {"type": "text"}}, None
    if not isinstance(raw, dict):
        raise field_refused("text", "must be an object")
    for name, value in raw.items():
        if name != "format" and (name != "verbosity" or value is not None):
            raise field_refused(f"text.{name}", "not supported by this gateway: leave it out")
    form = raw.get("format")
    if form is None:
        return {"format": {"type": "text"}}, None
    at = "text.format"
    kind = form.get("type") if isinstance(form, dict) else None
    if not isinstance(form, dict) or kind not in ("text", "json_object", "json_schema"):
        raise field_refused(f"{at}.type", "must be text, json_object or json_schema")
    if kind != "json_schema":
        _unknown_check(form, ("type",), at)
        chat = None if kind == "text" else {"type": "json_object"}
        return {"format": {"type": kind}}, chat
    _unknown_check(form, JSON_SCHEMA_FIELDS, at)
    name = _name(form.get("name"), f"{at}.name")
    schema = form.get("schema")
    if not isinstance(schema, dict):
        raise field_refused(f"{at}.schema", "is required: a JSON Schema object")
    description = _optional(form, "description", str, at, "a string")
    strict = _optional(form, "strict", bool, at, "a boolean")
    echoed = {
        "type": "json_schema",
        "description": description,
        "name": name,
        "schema": schema,
        "strict": bool(strict),
    }
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    if description is not None:
        json_schema["description"] = description
    if strict is not None:
        json_schema["strict"] = strict
    return {"format": echoed}, {"type": "json_schema", "json_schema": json_schema}


def _tools(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The function tools as echoed and in their chat completions form. A function's `strict`
    is true unless the request says false, as OpenAI's Responses API has it."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise field_refused("tools", "must be a list of function tools")
    echoed, chat = [], []
    for index, tool in enumerate(raw):
        at = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise field_refused(at, "must be an object")
        kind = tool.get("type")
        if kind != "function":
            named = f"{kind!r} tools are" if isinstance(kind, str) else "this tool is"
            raise field_refused(
                f"{at}.type",
                f"{named} not supported by this gateway: only function tools (OpenAI's "
                "built-in tools run only at OpenAI)",
            )
        _unknown_check(tool, FUNCTION_TOOL_FIELDS, at)
        name = _name(tool.get("name"), f"{at}.name")
        description = _optional(tool, "description", str, at, "a string")
        parameters = _optional(tool, "parameters", dict, at, "a JSON Schema object")
        strict = _optional(tool, "strict", bool, at, "a boolean")
        strict = True if strict is None else strict
        echoed.append(
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": parameters,
                "strict": strict,
            }
        )
        function: dict[str, Any] = {"name": name}
        if description is not None:
            function["description"] = description
        if parameters is not None:
            function["parameters"] = parameters
        function["strict"] = strict
        chat.append({"type": "function", "function": function})
    return echoed, chat


def _tool_choice(raw: Any, tools: list[dict[str, Any]]) -> tuple[Any, Any]:
    """`tool_choice` as echoed and in its chat form (None: not sent, as without tools a
    choice of `auto` or `none` changes nothing)."""
    if raw is None:
        return "auto", None
    if isinstance(raw, str) and raw in TOOL_CHOICES:
        return raw, raw if tools or raw == "required" else None
    if isinstance(raw, dict) and raw.get("type") == "function":
        _unknown_check(raw, ("type", "name"), "tool_choice")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise field_refused("tool_choice.name", "must be the name of one of the tools")
        return {"type": "function", "name": name}, {
            "type": "function",
            "function": {"name": name},
        }
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        raise field_refused(
            "tool_choice.type",
            f"{raw['type']!r} is not supported by this gateway: only {TOOL_CHOICE_FORMS}",
        )
    raise field_refused("tool_choice", f"must be {TOOL_CHOICE_FORMS}")


def _content(raw: Any, at: str) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise field_refused(at, "must be a string or a list of input_text parts")
    texts = []
    for index, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS:
            named = f"{kind!r} parts are" if isinstance(kind, str) else "this part is"
            raise field_refused(
                f"{at}[{index}]", f"{named} not supported: only text (input_text, output_text)"
            )
        if not isinstance(part.get("text"), str):
            raise field_refused(f"{at}[{index}].text", "must be a string")
        texts.append(part["text"])
    return "".join(texts)


def _text_field(item: dict[str, Any], name: str, at: str, *, empty: bool = False) -> str:
    value = item.get(name)
    if not isinstance(value, str) or (not value and not empty):
        what = "a string" if empty else "a non-empty string"
        raise field_refused(f"{at}.{name}", f"must be {what}")
    return value


def _function_call(item: dict[str, Any], at: str) -> dict[str, Any]:
    """A `function_call` item as a chat tool call."""
    _unknown_check(item, ("type", "call_id", "name", "arguments", "id", "status"), at)
    return {
        "id": _text_field(item, "call_id", at),
        "type": "function",
        "function": {
            "name": _text_field(item, "name", at),
            "arguments": _text_field(item, "arguments", at, empty=True),
        },
    }


def _input(raw: Any) -> tuple[list[dict[str, Any]], tuple[tuple[int, str], ...]]:
    """The input as chat messages, and where its function call outputs are. A string is one user
    message; function calls that follow an assistant message (or each other) are that assistant
    turn's tool calls, as the model made them in one turn."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}], ()
    if not isinstance(raw, list) or not raw:
        raise field_refused("input", "is required: a string or a non-empty list of messages")
    messages: list[dict[str, Any]] = []
    outputs: list[tuple[int, str]] = []
    for index, item in enumerate(raw):
        at = f"input[{index}]"
        if not isinstance(item, dict):
            raise field_refused(at, "must be an object")
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _function_call(item, at)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last["tool_calls"] = [*last.get("tool_calls", []), call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            continue
        if kind == "function_call_output":
            _unknown_check(item, ("type", "call_id", "output", "id", "status"), at)
            call_id = _text_field(item, "call_id", at)
            output = _content(item.get("output"), f"{at}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
            outputs.append((index, call_id))
            continue
        if kind != "message":
            named = f"{kind!r} items are" if isinstance(kind, str) else "this item is"
            raise field_refused(f"{at}.type", f"{named} not supported: only {ITEM_TYPES}")
        role = item.get("role")
        if role not in ROLES:
            raise field_refused(f"{at}.role", f"must be one of {', '.join(ROLES)}")
        _unknown_check(item, ("type", "role", "content", "id", "status"), at)
        messages.append({"role": role, "content": _content(item.get("content"), f"{at}.content")})
    return messages, tuple(outputs)


def parse_response_ask(body: Any) -> ResponseAsk:
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    # Checked here too, so that a NUL is named where the request put it.
    try:
        nul_check(body)
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc
    for name, value in body.items():
        if name in READ_FIELDS or name in NO_EFFECT_FIELDS:
            continue
        allowed = NEUTRAL_VALUES.get(name)
        if allowed is None:
            raise field_refused(name, "unknown field")
        if not _neutral(value, allowed):
            raise field_refused(
                name,
                "not supported by this gateway: the answer would ignore it, so the request is "
                "refused (leave it out; docs/api.md lists what each field does)",
            )
    text, response_format = _text_format(body.get("text"))
    tools, chat_tools = _tools(body.get("tools"))
    tool_choice, chat_tool_choice = _tool_choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise field_refused("parallel_tool_calls", "must be a boolean")
    chat: dict[str, Any] = {}
    if chat_tools:
        chat["tools"] = chat_tools
    if chat_tool_choice is not None:
        chat["tool_choice"] = chat_tool_choice
    if chat_tools and parallel is not None:
        chat["parallel_tool_calls"] = parallel
    if response_format is not None:
        chat["response_format"] = response_format
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise field_refused("instructions", "must be a string")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise field_refused("previous_response_id", "must be a response id")
    store = body.get("store", True)
    if store is None:
        store = True
    if not isinstance(store, bool):
        raise field_refused("store", "must be a boolean")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise field_refused("stream", "must be a boolean")
    messages, outputs = _input(body.get("input"))
    return ResponseAsk(
        body=body,
        input=messages,
        instructions=instructions or None,
        previous_response_id=previous,
        store=store,
        stream=stream,
        chat=chat,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=True if parallel is None else parallel,
        text=text,
        outputs=outputs,
    )


def outputs_check(ask: ResponseAsk, history: list[dict[str, Any]]) -> None:
    """Refuse, as OpenAI does, a `function_call_output` that answers no function call of the
    conversation (the stored one it continues, or an earlier item of its input), and a
    conversation with a function call no output answers."""
    conversation = [*history, *ask.input]
    called = [call["id"] for message in conversation for call in message.get("tool_calls") or ()]
    for index, call_id in ask.outputs:
        if call_id not in called:
            raise field_refused(
                f"input[{index}].call_id",
                f"no function call with call_id {call_id!r} in this conversation",
            )
    answered = {message.get("tool_call_id") for message in conversation}
    for call_id in called:
        if call_id not in answered:
            raise field_refused(
                "input",
                f"the function call with call_id {call_id!r} has no function_call_output: "
                "send one for every function call",
            )
