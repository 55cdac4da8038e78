"""Function calling and JSON answers at the Gemini door, in Google's wire format, read into the
common request (tools, tool choice, tool calls and their results, the answer's form) and the
answer's tool calls written back as `functionCall` parts.

A declaration's `parameters` (and `responseSchema`) is Google's `Schema`, OpenAPI 3.0's subset
with `type: "OBJECT"`: it becomes the JSON Schema every provider reads (types in lower case,
`nullable: true` as a `"null"` type, fields by their JSON names); `parametersJsonSchema` (and
`responseJsonSchema`) is JSON Schema already and goes on as it is. The calls of a model turn
keep their `id`, or are named `call_<turn>_<n>` (the turn's and the part's place); the
`functionResponse` parts after them answer them by `id` when they carry one, else by the
function's name, in order, as Google matches them.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.gemini_names import fields_named
from gateway.refusals import field_refused
from providers.adapters.types import (
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    json_text,
    tool_arguments_object,
    tool_call_id_own,
    tool_call_id_signed,
    tool_call_id_split,
)

# Google's rule for a function's name.
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
FUNCTION_DECLARATIONS = "functionDeclarations"
# The other kinds of Tool Google defines: its own tools, which no provider here runs.
TOOL_KINDS = {
    FUNCTION_DECLARATIONS,
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "computerUse",
    "fileSearch",
    "googleMaps",
    "retrieval",
    "enterpriseWebSearch",
    "mcpServers",
}
DECLARATION_FIELDS = {
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
}
SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
SCHEMA_TYPES = ("STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")
CALLING_CONFIG = "toolConfig.functionCallingConfig"
CALLING_MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")
JSON_MIME = "application/json"
# What a JSON answer's schema is named where a provider wants a name (OpenAI's json_schema).
RESPONSE_SCHEMA_NAME = "response"


def json_schema_of(raw: Any, where: str) -> dict[str, Any]:
    """Google's `Schema` at `where` as JSON Schema."""
    if not isinstance(raw, dict):
        raise field_refused(where, "must be a Schema object")
    fields = fields_named(raw, SCHEMA_FIELDS, where)
    schema: dict[str, Any] = {}
    for name, value in fields.items():
        at = f"{where}.{name}"
        if name == "type":
            if not isinstance(value, str) or value.upper() not in SCHEMA_TYPES:
                raise field_refused(at, f"must be one of {', '.join(SCHEMA_TYPES)}")
            schema["type"] = value.lower()
        elif name == "properties":
            if not isinstance(value, dict):
                raise field_refused(at, "must be an object of Schemas by property name")
            schema["properties"] = {
                key: json_schema_of(sub, f"{at}.{key}") for key, sub in value.items()
            }
        elif name == "items":
            schema["items"] = json_schema_of(value, at)
        elif name == "anyOf":
            if not isinstance(value, list) or not value:
                raise field_refused(at, "must be a non-empty list of Schemas")
            schema["anyOf"] = [json_schema_of(sub, f"{at}[{n}]") for n, sub in enumerate(value)]
        elif name == "nullable":
            if not isinstance(value, bool):
                raise field_refused(at, "must be a boolean")
        else:
            schema[name] = value
    if fields.get("nullable") is True:
        if isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
        elif "anyOf" in schema:
            schema["anyOf"] = [*schema["anyOf"], {"type": "null"}]
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def tools_of(raw: Any) -> tuple[Tool, ...]:
    """The functions of `tools[].functionDeclarations`; any other kind of tool is refused."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise field_refused("tools", "must be a list of Tool objects")
    tools: list[Tool] = []
    for index, item in enumerate(raw):
        at = f"tools[{index}]"
        if not isinstance(item, dict):
            raise field_refused(at, "must be an object")
        kinds = fields_named(item, TOOL_KINDS, at)
        for kind in kinds:
            if kind != FUNCTION_DECLARATIONS:
                raise field_refused(
                    f"{at}.{kind}",
                    "is not supported by this gateway: only functionDeclarations "
                    "(function calling) are",
                )
        declarations = kinds.get(FUNCTION_DECLARATIONS)
        if declarations is None:
            continue
        if not isinstance(declarations, list):
            raise field_refused(
                f"{at}.{FUNCTION_DECLARATIONS}", "must be a list of FunctionDeclaration objects"
            )
        tools += [
            _declaration(declaration, f"{at}.{FUNCTION_DECLARATIONS}[{n}]")
            for n, declaration in enumerate(declarations)
        ]
    names = [tool.name for tool in tools]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise field_refused("tools", f"two functionDeclarations are named {twice!r}")
    return tuple(tools)


def _declaration(raw: Any, at: str) -> Tool:
    if not isinstance(raw, dict):
        raise field_refused(at, "must be a FunctionDeclaration object")
    fields = fields_named(raw, DECLARATION_FIELDS, at)
    name = fields.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
        raise field_refused(
            f"{at}.name", "must be 1 to 64 letters, digits, underscores, dots, colons or dashes"
        )
    description = fields.get("description")
    if description is not None and not isinstance(description, str):
        raise field_refused(f"{at}.description", "must be a string")
    for field in ("response", "responseJsonSchema", "behavior"):
        if fields.get(field) is not None:
            raise field_refused(
                f"{at}.{field}",
                "is not supported by this gateway (no provider it routes to reads it)",
            )
    schema, json_schema = fields.get("parameters"), fields.get("parametersJsonSchema")
    if schema is not None and json_schema is not None:
        raise field_refused(f"{at}.parametersJsonSchema", "is mutually exclusive with parameters")
    if json_schema is not None and not isinstance(json_schema, dict):
        raise field_refused(f"{at}.parametersJsonSchema", "must be a JSON Schema object")
    parameters = json_schema_of(schema, f"{at}.parameters") if schema is not None else json_schema
    return Tool(name=name, description=description, parameters=parameters)


def tool_choice_of(raw: Any, tools: tuple[Tool, ...]) -> tuple[tuple[Tool, ...], ToolChoice | None]:
    """The tools offered and the choice of `toolConfig.functionCallingConfig`: AUTO is `auto`,
    NONE `none`, ANY `required`, or the one function `allowedFunctionNames` names; ANY with
    several of the functions offers those alone, one of which must be called."""
    if raw is None:
        return tools, None
    if not isinstance(raw, dict):
        raise field_refused("toolConfig", "must be an object")
    config = fields_named(raw, {"functionCallingConfig", "retrievalConfig"}, "toolConfig")
    if config.get("retrievalConfig") is not None:
        raise field_refused(
            "toolConfig.retrievalConfig",
            "is not supported by this gateway (it serves Google's own search and maps tools)",
        )
    calling = config.get("functionCallingConfig")
    if calling is None:
        return tools, None
    if not isinstance(calling, dict):
        raise field_refused(CALLING_CONFIG, "must be an object")
    fields = fields_named(calling, {"mode", "allowedFunctionNames"}, CALLING_CONFIG)
    mode = fields.get("mode") or "MODE_UNSPECIFIED"
    if mode not in CALLING_MODES or mode == "VALIDATED":
        raise field_refused(
            f"{CALLING_CONFIG}.mode",
            "must be AUTO, ANY or NONE (VALIDATED is not supported by this gateway: no provider "
            "it routes to checks the calls against their schemas)",
        )
    names = fields.get("allowedFunctionNames")
    allowed_at = f"{CALLING_CONFIG}.allowedFunctionNames"
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise field_refused(allowed_at, "must be a list of function names")
        if names and mode != "ANY":
            raise field_refused(allowed_at, "is read only with mode ANY")
        declared = {tool.name for tool in tools}
        unknown = next((n for n in names if n not in declared), None)
        if unknown is not None:
            raise field_refused(
                allowed_at, f"names {unknown!r}, which is not among the functionDeclarations"
            )
    if not tools:
        if mode == "ANY":
            raise field_refused(
                f"{CALLING_CONFIG}.mode", "ANY is read only with functionDeclarations"
            )
        return tools, None
    if mode == "NONE":
        return tools, ToolChoice(mode="none")
    if mode != "ANY":
        return tools, ToolChoice(mode="auto") if mode == "AUTO" else None
    allowed = list(dict.fromkeys(names or ()))
    if len(allowed) == 1:
        return tools, ToolChoice(mode="function", name=allowed[0])
    if allowed:
        tools = tuple(tool for tool in tools if tool.name in allowed)
    return tools, ToolChoice(mode="required")


def function_call_of(
    raw: Any, at: str, *, default_id: str, signature: str | None = None
) -> ToolCall:
    """A model turn's `functionCall` part as the tool call it made; the part's thought
    signature rides in the call's id (`tool_call_id_signed`), so that the model's upstream
    gets it back."""
    if not isinstance(raw, dict):
        raise field_refused(at, "must be an object with a name and args")
    fields = fields_named(raw, {"id", "name", "args"}, at)
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise field_refused(f"{at}.name", "must be a non-empty string")
    args = fields.get("args")
    if args is not None and not isinstance(args, dict):
        raise field_refused(f"{at}.args", "must be an object")
    call_id = fields.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise field_refused(f"{at}.id", "must be a string")
    return ToolCall(
        id=tool_call_id_signed(call_id or default_id, signature),
        name=name,
        arguments=json_text(args or {}),
    )


def function_response_of(
    raw: Any, at: str, *, calls: tuple[ToolCall, ...], answered: set[str]
) -> Message:
    """A `functionResponse` part as the `tool` turn answering one of `calls` (the model turn's
    before it) that is not `answered` yet: the one its `id` names, else the first to its
    function. Its `response` object is the turn's text, as JSON."""
    if not isinstance(raw, dict):
        raise field_refused(at, "must be an object with a name and response")
    fields = fields_named(
        raw, {"id", "name", "response", "parts", "willContinue", "scheduling"}, at
    )
    for field in ("parts", "willContinue", "scheduling"):
        if fields.get(field) not in (None, []):
            raise field_refused(f"{at}.{field}", "is not supported by this gateway")
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise field_refused(f"{at}.name", "must be a non-empty string")
    response = fields.get("response")
    if not isinstance(response, dict):
        raise field_refused(f"{at}.response", "must be an object (the function's result)")
    call_id = fields.get("id")
    if call_id is not None and not isinstance(call_id, str):
        raise field_refused(f"{at}.id", "must be a string")
    open_calls = [call for call in calls if call.id not in answered]
    if call_id:
        # The client knows a call by the id the door gave it: the call's own, without its
        # thought signature.
        call = next((c for c in open_calls if call_id in (c.id, tool_call_id_own(c.id))), None)
        if call is None:
            raise field_refused(
                f"{at}.id", f"{call_id!r} names no open functionCall of the model turn before it"
            )
        if call.name != name:
            raise field_refused(
                f"{at}.name", f"is {name!r}, but call {call_id!r} is to {call.name!r}"
            )
    else:
        call = next((c for c in open_calls if c.name == name), None)
        if call is None:
            raise field_refused(
                f"{at}.name",
                f"answers no open functionCall to {name!r} of the model turn before it",
            )
    answered.add(call.id)
    return Message(role="tool", content=json_text(response), tool_call_id=call.id)


def response_format_of(config: dict[str, Any]) -> ResponseFormat | None:
    """JSON mode: `responseMimeType: application/json`, with `responseSchema` (Google's Schema)
    or `responseJsonSchema` (JSON Schema) for a schema's answer, else any JSON."""
    mime = config.get("responseMimeType")
    schema, json_schema = config.get("responseSchema"), config.get("responseJsonSchema")
    if mime is None or mime == "text/plain":
        for field, value in (("responseSchema", schema), ("responseJsonSchema", json_schema)):
            if value is not None:
                raise field_refused(
                    f"generationConfig.{field}", f"is read only with responseMimeType {JSON_MIME}"
                )
        return None
    if mime != JSON_MIME:
        raise field_refused(
            "generationConfig.responseMimeType",
            f"must be text/plain or {JSON_MIME} (other types, text/x.enum among them, are not "
            "supported by this gateway)",
        )
    if schema is not None and json_schema is not None:
        raise field_refused(
            "generationConfig.responseJsonSchema", "is mutually exclusive with responseSchema"
        )
    if schema is not None:
        converted = json_schema_of(schema, "generationConfig.responseSchema")
        return ResponseFormat(type="json_schema", name=RESPONSE_SCHEMA_NAME, schema=converted)
    if json_schema is not None:
        if not isinstance(json_schema, dict):
            raise field_refused(
                "generationConfig.responseJsonSchema", "must be a JSON Schema object"
            )
        return ResponseFormat(type="json_schema", name=RESPONSE_SCHEMA_NAME, schema=json_schema)
    return ResponseFormat(type="json_object")


class CallUnreadable(Exception):
    """A model's call whose arguments are no JSON object, which a `functionCall` cannot hold."""


def function_call_part(call: ToolCall) -> dict[str, Any]:
    """The answer's tool call as Google's `functionCall` part: its own id, and the thought
    signature its id carries beside it, as Gemini sends it."""
    args = tool_arguments_object(call)
    if args is None:
        raise CallUnreadable(
            f"The model called {call.name} with arguments that are not a JSON object: "
            f"{call.arguments[:200]!r}"
        )
    own, signature = tool_call_id_split(call.id)
    part: dict[str, Any] = {"functionCall": {"id": own, "name": call.name, "args": args}}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part
