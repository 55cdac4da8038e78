"""Ollama's `/api/chat` and `/api/generate` bodies into the common `GatewayRequest`.

Kept: `model`, `messages` (roles system, user, assistant and tool; a user message's `images`; an
assistant message's `tool_calls`) or `prompt`, `system` and `images`, `tools` (function tools,
as Chat Completions has them), `format` (`json`, or a JSON Schema the answer must match),
`stream` (true when absent, as Ollama has it), and the `options` temperature, top_p,
num_predict (the answer's `max_tokens`; -1 and -2 mean no limit) and stop. Images are base64
without a media type, as Ollama takes them: the type is read from their first bytes
(gateway/images.py).

Ollama's tool calls have no ids: a call is named `call_<message>_<n>` (its message's and its own
index), and a `tool` message answers the first call not answered yet of the assistant message
before it, to the function its `tool_name` names (any function, without one: older clients send
none). What would change the answer and cannot be honoured here (`think`, `suffix`, `context`,
`template`, logprobs, images outside a user turn) is refused when set, naming the field; what
only tunes a local runtime (`keep_alive`, `raw`, `num_ctx`, `seed`, `top_k` and the other
options) is accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analytics.models import RequestLog
from gateway.auth import GatewayError
from gateway.images import image_of_bare_base64
from gateway.openai_parse import function_tools
from providers.adapters.types import Image, Message, ResponseFormat, Tool, ToolCall, json_text
from routing.guards.response_cache import cache_control_opts_out
from routing.pipeline.events import Caller, GatewayRequest
from routing.validation import (
    MODEL_MAX_CHARS,
    SESSION_MAX_CHARS,
    FieldInvalid,
    max_tokens_check,
    nul_check,
    text_check,
)

# Ollama names a model `name:tag`, and its clients add the default tag to a bare name.
LATEST_TAG = ":latest"
ROLES = ("system", "user", "assistant", "tool")
# The name a `format` schema's answer goes by (Ollama's schema has none).
FORMAT_SCHEMA_NAME = "response"
# OpenAI's upstream refuses more; a request every provider can take.
MAX_STOP_SEQUENCES = 4
# -1: until the model stops; -2: until the context is full. Neither is a limit here.
UNLIMITED_NUM_PREDICT = (-1, -2)


@dataclass(frozen=True)
class OllamaCall:
    request: GatewayRequest
    stream: bool
    model: str
    """The name as the client sent it (`:latest` and all): Ollama echoes it in every answer."""
    load_only: bool
    """Nothing to answer (no messages, no prompt): Ollama's way of loading a model, answered
    with `done_reason: "load"` and no call to any model."""


def model_name(requested: str) -> str:
    """The gateway's name for an Ollama model name: the same, less Ollama's default tag
    (`auto:latest` is `auto`, `alpha:alpha-model:latest` is `alpha:alpha-model`)."""
    if requested.endswith(LATEST_TAG) and len(requested) > len(LATEST_TAG):
        return requested[: -len(LATEST_TAG)]
    return requested


def chat_call(
    body: Any, *, caller: Caller, session_header: str | None, cache_control: str | None
) -> OllamaCall:
    common = _common(body, session_header)
    _unset(body, "think", "logprobs")
    raw = body.get("messages")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise FieldInvalid("messages", "must be a list of messages")
    messages = _messages(raw)
    tools = _tools(body.get("tools"))
    return _call(
        common, messages, caller, session_header, cache_control, load=not messages, tools=tools
    )


def generate_call(
    body: Any, *, caller: Caller, session_header: str | None, cache_control: str | None
) -> OllamaCall:
    common = _common(body, session_header)
    _unset(body, "think", "suffix", "context", "template", "logprobs")
    prompt = _text(body, "prompt")
    system = _text(body, "system")
    images = _images(body.get("images"), "images")
    messages: tuple[Message, ...] = (Message(role="system", content=system),) if system else ()
    if prompt or images:
        messages += (Message(role="user", content=prompt, images=images),)
    return _call(common, messages, caller, session_header, cache_control, load=not messages)


@dataclass(frozen=True)
class _Common:
    model: str
    stream: bool
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: tuple[str, ...]
    response_format: ResponseFormat | None


def _common(body: Any, session_header: str | None) -> _Common:
    if not isinstance(body, dict):
        raise FieldInvalid("body", "must be a JSON object")
    # What cannot be logged is refused before it is answered (routing/validation.py).
    nul_check(body)
    nul_check(session_header, "x-session-id")
    model = body.get("model")
    if model is None or model == "":
        raise FieldInvalid("model", "is required (a model, a policy name or 'auto')")
    if not isinstance(model, str):
        raise FieldInvalid("model", "must be a string")
    text_check(model, "model", MODEL_MAX_CHARS)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise FieldInvalid("stream", "must be a boolean")
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise FieldInvalid("options", "must be an object")
    return _Common(
        model=model,
        stream=True if stream is None else stream,
        max_tokens=_num_predict(options.get("num_predict")),
        temperature=_number(options, "temperature", 0, 2),
        top_p=_number(options, "top_p", 0, 1),
        stop=_stop(options.get("stop")),
        response_format=_format(body.get("format")),
    )


def _call(
    common: _Common,
    messages: tuple[Message, ...],
    caller: Caller,
    session_header: str | None,
    cache_control: str | None,
    *,
    load: bool,
    tools: tuple[Tool, ...] = (),
) -> OllamaCall:
    request = GatewayRequest(
        messages=messages,
        entry_point=RequestLog.EntryPoint.OLLAMA,
        caller=caller,
        model=model_name(common.model),
        max_tokens=common.max_tokens,
        temperature=common.temperature,
        top_p=common.top_p,
        stop=common.stop,
        session_id=(session_header or "")[:SESSION_MAX_CHARS],
        use_cache=not cache_control_opts_out(cache_control),
        buffered=not common.stream,
        tools=tools,
        response_format=common.response_format,
        # An Ollama tool call's arguments are an object: a call whose arguments are not is
        # the model's invalid answer (routing/pipeline/execution.py).
        tool_arguments_objects=True,
    )
    return OllamaCall(request=request, stream=common.stream, model=common.model, load_only=load)


def _unset(body: dict[str, Any], *fields: str, path: str = "") -> None:
    """Refuse a field this door cannot honour, unless it is absent or empty (clients send
    `tools: []` and `think: false` when they mean nothing)."""
    for name in fields:
        if body.get(name) not in (None, False, "", [], {}):
            raise FieldInvalid(f"{path}{name}", "is not supported by this gateway")


def _text(body: dict[str, Any], field: str, path: str = "") -> str:
    value = body.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldInvalid(f"{path}{field}", "must be a string")
    return value


def _messages(raw: list[Any]) -> tuple[Message, ...]:
    messages: list[Message] = []
    open_calls: list[ToolCall] = []
    for index, item in enumerate(raw):
        message = _message(item, f"messages[{index}]", index)
        if message.role == "tool":
            message = _answering(item, f"messages[{index}]", message, open_calls)
        else:
            open_calls = list(message.tool_calls)
        messages.append(message)
    return tuple(messages)


def _answering(
    item: dict[str, Any], field: str, message: Message, open_calls: list[ToolCall]
) -> Message:
    """A `tool` message as the answer to the first open call to its `tool_name` (to any
    function without one), which is then answered."""
    name = item.get("tool_name")
    if name is not None and not isinstance(name, str):
        raise FieldInvalid(f"{field}.tool_name", "must be a string")
    call = next((c for c in open_calls if not name or c.name == name), None)
    if call is None:
        to = f" to {name!r}" if name else ""
        raise FieldInvalid(
            field, f"answers no open tool call{to} of the assistant message before it"
        )
    open_calls.remove(call)
    return Message(role="tool", content=message.content, tool_call_id=call.id)


def _message(item: Any, field: str, index: int) -> Message:
    if not isinstance(item, dict):
        raise FieldInvalid(field, "must be an object")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise FieldInvalid(f"{field}.role", "must be one of system, user, assistant, tool")
    calls = _tool_calls(item.get("tool_calls"), f"{field}.tool_calls", role, index)
    images = _images(item.get("images"), f"{field}.images")
    if images and role != "user":
        raise FieldInvalid(f"{field}.images", f"are read only in user messages, not in {role}")
    content = _text(item, "content", f"{field}.")
    return Message(role=role, content=content, images=images, tool_calls=calls)  # type: ignore[arg-type]


def _tool_calls(raw: Any, field: str, role: str, index: int) -> tuple[ToolCall, ...]:
    """An assistant message's calls, Ollama's `{"function": {"name", "arguments": {…}}}`."""
    if raw in (None, []):
        return ()
    if role != "assistant":
        raise FieldInvalid(field, "are read only in assistant messages")
    if not isinstance(raw, list):
        raise FieldInvalid(field, "must be a list of tool calls")
    calls = []
    for n, call in enumerate(raw):
        at = f"{field}[{n}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise FieldInvalid(f"{at}.function", "must be an object with a name and arguments")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise FieldInvalid(f"{at}.function.name", "must be a non-empty string")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise FieldInvalid(f"{at}.function.arguments", "must be an object")
        calls.append(ToolCall(id=f"call_{index}_{n}", name=name, arguments=json_text(arguments)))
    return tuple(calls)


def _tools(raw: Any) -> tuple[Tool, ...]:
    """Ollama's `tools` are Chat Completions' function tools."""
    if raw in (None, []):
        return ()
    try:
        return function_tools(raw)
    except GatewayError as exc:
        field = str(exc.details.get("field", "tools"))
        raise FieldInvalid(field, exc.message.removeprefix(f"{field}: ")) from None


def _format(value: Any) -> ResponseFormat | None:
    """`format`: `json` for any JSON answer, or a JSON Schema the answer must match."""
    if value in (None, ""):
        return None
    if value == "json":
        return ResponseFormat(type="json_object")
    if isinstance(value, dict) and value:
        return ResponseFormat(type="json_schema", name=FORMAT_SCHEMA_NAME, schema=value)
    raise FieldInvalid("format", 'must be "json" or a JSON Schema object')


def _images(value: Any, field: str) -> tuple[Image, ...]:
    """Ollama's `images`: base64 strings, each a PNG, JPEG, GIF or WEBP image."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FieldInvalid(field, "must be a list of base64 images")
    return tuple(
        image_of_bare_base64(item, f"{field}[{index}]") for index, item in enumerate(value)
    )


def _number(options: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise FieldInvalid(f"options.{name}", f"must be a number between {low:g} and {high:g}")
    return float(value)


def _num_predict(value: Any) -> int | None:
    if value is None or (type(value) is int and value in UNLIMITED_NUM_PREDICT):
        return None
    try:
        return max_tokens_check(value, "options.num_predict")
    except FieldInvalid as exc:
        raise FieldInvalid(exc.field, f"{exc.message} (or -1 for no limit)") from exc


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) for s in value)
    ):
        raise FieldInvalid(
            "options.stop", f"must be a string or a list of up to {MAX_STOP_SEQUENCES} strings"
        )
    return tuple(value)
