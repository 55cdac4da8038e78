"""The OpenAI door's requests: a `/v1/chat/completions` body, checked field by field, into the
common `GatewayRequest`. A body that cannot be answered is refused here, with the field named,
and its refusal logged, before anything is admitted or routed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.http import HttpRequest

from analytics.models import RequestLog
from gateway.auth import GatewayError, body_size_check, caller_from_key
from gateway.images import image_of_url
from gateway.refusals import field_refused, json_body, model_of, number_field, refusal_logged
from providers.adapters.types import (
    Image,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)
from routing.guards.response_cache import cache_control_opts_out
from routing.pipeline.events import Caller, GatewayRequest
from routing.request_metadata import (
    END_USER_MAX_CHARS,
    RequestMetadata,
    metadata_read,
    metadata_text,
)
from routing.validation import (
    MODEL_MAX_CHARS,
    TASK_TYPE_MAX_CHARS,
    FieldInvalid,
    fallback_chain_check,
    max_tokens_check,
    nul_check,
    text_check,
)

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
# OpenAI's rule for a function's name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOOL_CHOICES = ("auto", "none", "required")
# OpenAI's `image_url.detail`: checked, then left to the provider's default (images are sent as
# their data URL alone).
IMAGE_DETAILS = ("auto", "low", "high")


def _content(content: Any, field: str, role: str) -> tuple[str, tuple[Image, ...]]:
    """A message's text (its text parts joined) and its images, in order. Images are read only
    in user messages: the providers take them nowhere else."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise field_refused(field, "must be a string or a list of text and image_url parts")
    texts: list[str] = []
    images: list[Image] = []
    for index, part in enumerate(content):
        at = f"{field}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise field_refused(f"{at}.text", "must be a string")
            texts.append(part["text"])
        elif kind == "image_url":
            if role != "user":
                raise field_refused(at, f"images are read only in user messages, not in {role}")
            images.append(_image(part.get("image_url"), f"{at}.image_url"))
        else:
            named = f"{kind!r} parts are" if isinstance(kind, str) else "this part is"
            raise field_refused(at, f"{named} not supported: only text and image_url content parts")
    return "".join(texts), tuple(images)


def _image(value: Any, field: str) -> Image:
    if not isinstance(value, dict):
        raise field_refused(field, "must be an object with a url")
    detail = value.get("detail")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise field_refused(f"{field}.detail", f"must be one of {', '.join(IMAGE_DETAILS)}")
    return image_of_url(value.get("url"), f"{field}.url")


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise field_refused("messages", "must be a non-empty list")
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise field_refused(f"messages[{index}]", "must be an object")
        raw_role = item.get("role")
        # A role of any other type (a list, an object) is refused, not looked up.
        role = ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise field_refused(
                f"messages[{index}].role",
                "must be one of system, developer, user, assistant, tool",
            )
        at = f"messages[{index}]"
        calls = _tool_calls(item.get("tool_calls"), f"{at}.tool_calls", role)
        content = item.get("content")
        # An assistant turn that called tools may say nothing.
        text, images = (
            ("", ())
            if content is None and calls
            else _content(content, f"{at}.content", str(raw_role))
        )
        call_id = item.get("tool_call_id")
        if role == "tool":
            if not isinstance(call_id, str) or not call_id:
                raise field_refused(f"{at}.tool_call_id", "is required in a tool message")
        elif call_id is not None:
            raise field_refused(f"{at}.tool_call_id", "is read only in tool messages")
        messages.append(
            Message(
                role=role,  # type: ignore[arg-type]
                content=text,
                images=images,
                tool_calls=calls,
                tool_call_id=call_id if role == "tool" else None,
            )
        )
    return tuple(messages)


def _tool_calls(raw: Any, field: str, role: str) -> tuple[ToolCall, ...]:
    """An assistant turn's `tool_calls`: each a function call with its id, name and arguments
    (the JSON text the model wrote, kept as it is)."""
    if raw is None:
        return ()
    if role != "assistant":
        raise field_refused(field, "is read only in assistant messages")
    if not isinstance(raw, list):
        raise field_refused(field, "must be a list of tool calls")
    calls = []
    for index, call in enumerate(raw):
        at = f"{field}[{index}]"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise field_refused(at, "must be an object of type function")
        call_id, function = call.get("id"), call.get("function")
        if not isinstance(call_id, str) or not call_id:
            raise field_refused(f"{at}.id", "must be a non-empty string")
        if not isinstance(function, dict):
            raise field_refused(f"{at}.function", "must be an object with a name and arguments")
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not name:
            raise field_refused(f"{at}.function.name", "must be a non-empty string")
        if not isinstance(arguments, str):
            raise field_refused(f"{at}.function.arguments", "must be a string (JSON text)")
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return tuple(calls)


def function_tools(raw: Any) -> tuple[Tool, ...]:
    """Chat Completions' `tools` (function tools only), as the Ollama door takes them too."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise field_refused("tools", "must be a list of function tools")
    tools = []
    for index, item in enumerate(raw):
        at = f"tools[{index}]"
        if not isinstance(item, dict) or item.get("type") != "function":
            raise field_refused(f"{at}.type", "only function tools are supported")
        function = item.get("function")
        if not isinstance(function, dict):
            raise field_refused(f"{at}.function", "must be an object")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise field_refused(
                f"{at}.function.name", "must be 1 to 64 letters, digits, underscores or dashes"
            )
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise field_refused(f"{at}.function.description", "must be a string")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise field_refused(f"{at}.function.parameters", "must be a JSON Schema object")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise field_refused(f"{at}.function.strict", "must be a boolean")
        unknown = set(function) - {"name", "description", "parameters", "strict"}
        if unknown:
            raise field_refused(f"{at}.function.{sorted(unknown)[0]}", "unknown field")
        tools.append(Tool(name, description, parameters, strict))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise field_refused("tools", "two tools have the same name")
    return tuple(tools)


def _tool_choice(raw: Any, tools: tuple[Tool, ...]) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in TOOL_CHOICES:
        choice = ToolChoice(mode=raw)  # type: ignore[arg-type]
    elif (
        isinstance(raw, dict)
        and raw.get("type") == "function"
        and isinstance(raw.get("function"), dict)
        and isinstance(raw["function"].get("name"), str)
    ):
        name = raw["function"]["name"]
        if name not in {t.name for t in tools}:
            raise field_refused("tool_choice", f"names {name!r}, which is not among the tools")
        choice = ToolChoice(mode="function", name=name)
    else:
        raise field_refused(
            "tool_choice",
            'must be "auto", "none", "required" or {"type": "function", "function": {"name": …}}',
        )
    if not tools and choice.mode != "none":
        raise field_refused("tool_choice", "is read only with tools")
    return choice if tools else None


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind != "json_schema":
        raise field_refused("response_format.type", "must be text, json_object or json_schema")
    schema = raw.get("json_schema")
    if not isinstance(schema, dict):
        raise field_refused("response_format.json_schema", "must be an object")
    name = schema.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise field_refused(
            "response_format.json_schema.name",
            "must be 1 to 64 letters, digits, underscores or dashes",
        )
    body = schema.get("schema")
    if body is not None and not isinstance(body, dict):
        raise field_refused("response_format.json_schema.schema", "must be a JSON Schema object")
    description = schema.get("description")
    if description is not None and not isinstance(description, str):
        raise field_refused("response_format.json_schema.description", "must be a string")
    strict = schema.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise field_refused("response_format.json_schema.strict", "must be a boolean")
    return ResponseFormat(
        type="json_schema", name=name, schema=body, description=description, strict=strict
    )


def parse_chat_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None = None,
    cache_control: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[GatewayRequest, bool, bool]:
    """`(request, stream, include_usage)` from a chat completions body; `session_header` is
    the request's `x-session-id`, which names the session instead of `user`; `cache_control`
    its `Cache-Control`, whose `no-cache` or `no-store` keeps the request out of the cache."""
    try:
        return _chat_request(
            body,
            caller=caller,
            session_header=session_header,
            cache_control=cache_control,
            headers=headers,
        )
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc


def _metadata(
    body: dict[str, Any], user: Any, headers: Mapping[str, str] | None
) -> RequestMetadata:
    """OpenAI's `metadata` (a map of up to 16 string keys and values) may carry `user_id`,
    `project_id` and `tags` (comma-separated); its other keys are the client's own and left
    alone. Without `metadata.user_id`, OpenAI's `user` names the end user (cut to the column's
    width, as it is for the session)."""
    raw = body.get("metadata")
    if raw is not None and not isinstance(raw, dict):
        raise field_refused("metadata", "must be an object")
    found = metadata_read(body=raw, headers=headers)
    if isinstance(user, str) and user and not (raw and raw.get("user_id") is not None):
        found = replace(found, end_user=metadata_text(user[:END_USER_MAX_CHARS], "user", 10**6))
    return found


# What the door does with each top-level field of a chat completions body (docs/api.md has the
# table). Read: the fields below and the gateway's extensions. Accepted with no effect: fields
# that do not change the answer. Refused unless they hold their neutral value: fields that would
# change the answer and that no adapter carries yet, so an answer never silently ignores them.
READ_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "n",
        "user",
        "metadata",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        # The gateway's extensions.
        "cache",
        "task_type",
        "fallback_chain",
        "context",
    }
)
NO_EFFECT_FIELDS = frozenset({"service_tier", "store", "prompt_cache_key", "safety_identifier"})
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "functions": (None, []),
    "function_call": (None, "none"),
    "logprobs": (None, False),
    "top_logprobs": (None,),
    "logit_bias": (None, {}),
    "seed": (None,),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "web_search_options": (None,),
    "verbosity": (None,),
}


def _fields_check(body: dict[str, Any]) -> None:
    """Refuse, naming it, a field the gateway would otherwise drop: one that would change the
    answer (unless it holds its neutral value), or one OpenAI does not define either."""
    for name, value in body.items():
        if name in READ_FIELDS or name in NO_EFFECT_FIELDS:
            continue
        neutral = NEUTRAL_VALUES.get(name)
        if neutral is None:
            raise field_refused(name, "unknown field")
        if not any((value == n and type(value) is not bool) or value is n for n in neutral):
            if name in ("functions", "function_call"):
                raise field_refused(
                    name, "deprecated by OpenAI and not read here: use tools and tool_choice"
                )
            raise field_refused(
                name,
                "not supported by this gateway yet: the answer would ignore it, so the request "
                "is refused (leave it out; docs/api.md lists what each field does)",
            )


def _chat_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None,
    cache_control: str | None,
    headers: Mapping[str, str] | None = None,
) -> tuple[GatewayRequest, bool, bool]:
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    # What cannot be logged is refused before it is answered (routing/validation.py).
    nul_check(body)
    nul_check(session_header, "x-session-id")
    _fields_check(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise field_refused("model", "is required (a model, a policy name or 'auto')")
    text_check(model, "model", MODEL_MAX_CHARS)
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise field_refused("n", "only n=1 is supported")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise field_refused("stop", "must be a string or a list of up to 4 strings")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise field_refused("stream", "must be a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise field_refused("stream_options", "must be an object")
    user = body.get("user", "")
    metadata = _metadata(body, user, headers)
    use_cache = body.get("cache", True)
    if not isinstance(use_cache, bool):
        raise field_refused("cache", "must be a boolean")
    # Extensions (docs/api.md): the caller's own chain, and the task type routing would guess.
    task_type = body.get("task_type")
    if task_type is not None and not isinstance(task_type, str):
        raise field_refused("task_type", "must be a string")
    text_check(task_type, "task_type", TASK_TYPE_MAX_CHARS)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise field_refused("parallel_tool_calls", "must be a boolean")
    tools = function_tools(body.get("tools"))
    request = GatewayRequest(
        messages=parse_messages(body.get("messages")),
        entry_point=RequestLog.EntryPoint.OPENAI,
        caller=caller,
        model=model,
        fallback_chain=fallback_chain_check(body.get("fallback_chain")),
        task_type=task_type or None,
        max_tokens=max_tokens_check(body.get("max_completion_tokens"), "max_completion_tokens")
        or max_tokens_check(body.get("max_tokens"), "max_tokens"),
        temperature=number_field(body, "temperature", 0, 2),
        top_p=number_field(body, "top_p", 0, 1),
        stop=tuple(stop or ()),
        session_id=(session_header or (user if isinstance(user, str) else ""))[:128],
        metadata=metadata,
        use_cache=use_cache and not cache_control_opts_out(cache_control),
        buffered=not stream,
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=parallel if tools else None,
        response_format=_response_format(body.get("response_format")),
    )
    return request, stream, bool(options.get("include_usage"))


def document_of(body: Any, stream: bool) -> str | None:
    """The gateway's `context` extension: a long text the messages are about, answered by
    parts when it fits no model's window (docs/routing.md, Long context). Opt-in only: a long
    message is never split."""
    if not isinstance(body, dict) or body.get("context") is None:
        return None
    document = body["context"]
    if not isinstance(document, str) or not document:
        raise field_refused("context", "must be a non-empty string (the document to read)")
    if stream:
        raise field_refused(
            "context", "is answered whole, not streamed: send it without stream (or stream: false)"
        )
    return document


async def chat_request_read(
    request: HttpRequest,
) -> tuple[GatewayRequest, bool, bool, str | None]:
    """`(request, stream, include_usage, document)`: the request, whether and how it streams,
    and its `context` extension's document, if any."""
    body_size_check(request)
    caller = await caller_from_key(request)
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", "Missing, invalid or revoked API key.")
    body = await json_body(request, caller, entry_point="openai")
    try:
        parsed, stream, include_usage = parse_chat_request(
            body,
            caller=caller,
            session_header=request.headers.get("x-session-id"),
            cache_control=request.headers.get("cache-control"),
            headers=request.headers,
        )
        return parsed, stream, include_usage, document_of(body, stream)
    except GatewayError as exc:
        await refusal_logged(exc, entry_point="openai", caller=caller, model=model_of(body))
        raise
