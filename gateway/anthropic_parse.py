"""The Anthropic door's requests: a Messages body (`/v1/messages`, `/v1/messages/count_tokens`),
checked field by field, into the common `GatewayRequest`. Text, images (base64, in user turns)
and client tool use (`tools`, `tool_choice`, `tool_use` blocks in assistant turns, `tool_result`
blocks in user turns) are read; other content blocks and server tools are refused naming them,
never dropped. A body that cannot be answered is refused here, and its refusal logged, before
anything is admitted or routed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from django.http import HttpRequest

from analytics.models import RequestLog
from gateway.auth import GatewayError, body_size_check, caller_from_key
from gateway.images import image_of_base64
from gateway.openai_parse import TOOL_NAME
from gateway.refusals import field_refused, json_body, model_of, number_field, refusal_logged
from providers.adapters.types import Image, Message, Tool, ToolCall, ToolChoice
from routing.guards.response_cache import cache_control_opts_out
from routing.pipeline.events import Caller, GatewayRequest
from routing.request_metadata import metadata_read
from routing.validation import (
    MODEL_MAX_CHARS,
    SESSION_MAX_CHARS,
    FieldInvalid,
    max_tokens_check,
    nul_check,
    text_check,
)

ROLES = ("user", "assistant", "system")
AUTH_MESSAGE = "Missing, invalid or revoked API key (x-api-key or Authorization: Bearer)."
# The turns each tool block is read in.
TOOL_BLOCK_ROLES = {"tool_use": "assistant", "tool_result": "user"}
# A custom tool's fields: `cache_control` and `eager_input_streaming` do not change the answer
# and are accepted with no effect; any other field would, and is refused.
TOOL_FIELDS = frozenset({"type", "name", "description", "input_schema", "strict"})
TOOL_NO_EFFECT_FIELDS = frozenset({"cache_control", "eager_input_streaming"})
# Anthropic's `tool_choice` types as the common request's modes.
TOOL_CHOICE_MODES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
# A failed tool's result reaches the model as its text after this mark (the common request's
# tool turns carry text only, so `is_error` is said in the text rather than dropped).
TOOL_ERROR_MARK = "Error: "


def _image_block(block: dict[str, Any], where: str) -> Image:
    """The image of an `image` block whose source is base64 data; a URL or file source is
    refused (the gateway never fetches an image)."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise field_refused(f"{where}.source", "must be an object")
    kind = source.get("type")
    if kind != "base64":
        raise field_refused(
            f"{where}.source",
            f"image source type {kind!r} is not supported: this gateway does not fetch images "
            "(URLs or files); send the image inline as "
            '{"type": "base64", "media_type": "image/png", "data": "<base64>"}',
        )
    return image_of_base64(source.get("media_type"), source.get("data"), f"{where}.source")


def _block(block: Any, where: str, *, images_from: str | None) -> str | Image:
    """The text of a `text` block, or the image of an `image` block (base64 only). `images_from`
    names who sent it when images are not accepted there (only user turns carry them); any other
    block is refused."""
    if not isinstance(block, dict):
        raise field_refused(where, "must be an object")
    kind = block.get("type")
    if kind == "image":
        if images_from is not None:
            raise field_refused(
                where, f"image blocks are accepted in user turns only, not in {images_from}"
            )
        return _image_block(block, where)
    if kind == "document":
        raise field_refused(
            where,
            "document blocks are not supported: this gateway passes text and images only "
            "to its models, so a request with one is refused rather than answered without it",
        )
    if kind in TOOL_BLOCK_ROLES:
        raise field_refused(where, f"{kind} blocks are read only in {TOOL_BLOCK_ROLES[kind]} turns")
    if kind != "text":
        raise field_refused(
            f"{where}.type",
            "only 'text', 'image', 'tool_use' (assistant turns) and 'tool_result' (user turns) "
            "content blocks are supported (no documents, thinking or server tool blocks)",
        )
    if not isinstance(block.get("text"), str):
        raise field_refused(f"{where}.text", "must be a string")
    return str(block["text"])


def _joined(parts: list[str | Image]) -> tuple[str, tuple[Image, ...]]:
    # Blocks are separate passages to the model: kept apart, not run together.
    texts = [part for part in parts if isinstance(part, str)]
    return "\n\n".join(texts), tuple(part for part in parts if isinstance(part, Image))


def _blocks(content: Any, field: str, *, images_from: str | None) -> tuple[str, tuple[Image, ...]]:
    """The text of a string or of a list of text blocks, and the images of its `image` blocks
    (base64 only) in their order; any other block is refused."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise field_refused(field, "must be a string or a list of content blocks")
    return _joined(
        [
            _block(block, f"{field}[{index}]", images_from=images_from)
            for index, block in enumerate(content)
        ]
    )


def _assistant_turn(content: list[Any], field: str) -> Message:
    """An assistant turn's text and the tools it called (its `tool_use` blocks), in order."""
    parts: list[str | Image] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(content):
        where = f"{field}[{index}]"
        if isinstance(block, dict) and block.get("type") == "tool_use":
            calls.append(_tool_use(block, where))
        else:
            parts.append(_block(block, where, images_from="assistant turns"))
    text, _ = _joined(parts)
    return Message(role="assistant", content=text, tool_calls=tuple(calls))


def _tool_use(block: dict[str, Any], where: str) -> ToolCall:
    """A `tool_use` block as the call it records: its id, name and input (as JSON text)."""
    call_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise field_refused(f"{where}.id", "must be a non-empty string")
    if not isinstance(name, str) or not name:
        raise field_refused(f"{where}.name", "must be a non-empty string")
    if not isinstance(tool_input, dict):
        raise field_refused(f"{where}.input", "must be an object (the tool's input)")
    return ToolCall(id=call_id, name=name, arguments=orjson.dumps(tool_input).decode())


def _user_turn(content: list[Any], field: str) -> list[Message]:
    """A user turn: a `tool` turn for each of its `tool_result` blocks (which come first, as
    Anthropic has them), then its text and images as one user turn, when it has any."""
    results: list[Message] = []
    parts: list[str | Image] = []
    for index, block in enumerate(content):
        where = f"{field}[{index}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            if parts:
                raise field_refused(
                    where, "tool_result blocks come first in a user turn, before any text or image"
                )
            results.append(_tool_result(block, where))
        else:
            parts.append(_block(block, where, images_from=None))
    if results and not parts:
        return results
    text, images = _joined(parts)
    return [*results, Message(role="user", content=text, images=images)]


def _tool_result(block: dict[str, Any], where: str) -> Message:
    """A `tool_result` block as the `tool` turn answering the call `tool_use_id`: its content,
    a string or text blocks, and `is_error` said in the text (TOOL_ERROR_MARK)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise field_refused(f"{where}.tool_use_id", "must be a non-empty string")
    content = block.get("content", "")
    if isinstance(content, list):
        for index, item in enumerate(content):
            if isinstance(item, dict) and item.get("type") == "image":
                raise field_refused(
                    f"{where}.content[{index}]",
                    "image blocks are not supported in tool results: this gateway's tool turns "
                    "carry text only, so the request is refused rather than answered without it",
                )
    text, _ = _blocks(content, f"{where}.content", images_from="tool results")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise field_refused(f"{where}.is_error", "must be a boolean")
    if is_error:
        text = TOOL_ERROR_MARK + text if text else TOOL_ERROR_MARK.strip(": ")
    return Message(role="tool", content=text, tool_call_id=call_id)


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise field_refused("messages", "must be a non-empty list")
    messages: list[Message] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise field_refused(f"messages[{index}]", "must be an object")
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise field_refused(
                f"messages[{index}].role", "must be 'user', 'assistant' or 'system'"
            )
        content, field = item.get("content"), f"messages[{index}].content"
        if isinstance(content, list) and role == "user":
            messages += _user_turn(content, field)
        elif isinstance(content, list) and role == "assistant":
            messages.append(_assistant_turn(content, field))
        else:
            text, images = _blocks(
                content, field, images_from=None if role == "user" else f"{role} turns"
            )
            messages.append(Message(role=role, content=text, images=images))  # type: ignore[arg-type]
    return tuple(messages)


def _tools(raw: Any) -> tuple[Tool, ...]:
    """Custom tools (name, description, input_schema); a server tool (web search, computer
    use, a text editor: a `type` other than `custom`) is refused naming it."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise field_refused("tools", "must be a list of tools")
    tools = []
    for index, item in enumerate(raw):
        at = f"tools[{index}]"
        if not isinstance(item, dict):
            raise field_refused(at, "must be an object")
        kind = item.get("type")
        if kind is not None and kind != "custom":
            raise field_refused(
                f"{at}.type",
                f"{kind!r} is not supported: this gateway offers its models custom tools only "
                "(name, description, input_schema), not tools Anthropic's servers run or define "
                "(web search, code execution, computer use, bash, text editor)",
            )
        name = item.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise field_refused(
                f"{at}.name", "must be 1 to 64 letters, digits, underscores or dashes"
            )
        description = item.get("description")
        if description is not None and not isinstance(description, str):
            raise field_refused(f"{at}.description", "must be a string")
        schema = item.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise field_refused(
                f"{at}.input_schema", 'must be a JSON Schema object ({"type": "object", …})'
            )
        strict = item.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise field_refused(f"{at}.strict", "must be a boolean")
        unknown = sorted(set(item) - TOOL_FIELDS - TOOL_NO_EFFECT_FIELDS)
        if unknown:
            raise field_refused(
                f"{at}.{unknown[0]}",
                "not supported by this gateway: the answer would ignore it, so the request is "
                "refused",
            )
        tools.append(Tool(name, description, schema, strict))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise field_refused("tools", "two tools have the same name")
    return tuple(tools)


def _tool_choice(raw: Any, tools: tuple[Tool, ...]) -> tuple[ToolChoice | None, bool | None]:
    """`(tool_choice, parallel_tool_calls)`: Anthropic's `{"type": auto | any | tool | none}`
    as the common choice (any: `required`, tool: `function`), and its
    `disable_parallel_tool_use` as whether calls may be parallel."""
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    mode = TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
    if not isinstance(raw, dict) or mode is None:
        raise field_refused(
            "tool_choice",
            'must be {"type": "auto"}, {"type": "any"}, {"type": "tool", "name": …} or '
            '{"type": "none"}',
        )
    allowed = {"type"} | ({"disable_parallel_tool_use"} if mode != "none" else set())
    allowed |= {"name"} if mode == "function" else set()
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise field_refused(f"tool_choice.{unknown[0]}", f"is not a field of {kind!r}")
    name = raw.get("name")
    if mode == "function":
        if not isinstance(name, str) or not name:
            raise field_refused("tool_choice.name", "must be a non-empty string")
        if name not in {t.name for t in tools}:
            raise field_refused("tool_choice.name", f"names {name!r}, which is not among the tools")
    disable = raw.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise field_refused("tool_choice.disable_parallel_tool_use", "must be a boolean")
    if not tools:
        if mode != "none":
            raise field_refused("tool_choice", "is read only with tools")
        return None, None
    choice = ToolChoice(mode=mode, name=name if mode == "function" else None)  # type: ignore[arg-type]
    return choice, None if disable is None else not disable


def _session(body: dict[str, Any], session_header: str | None) -> str:
    """`x-session-id`, else `metadata.user_id` (Anthropic's one metadata field)."""
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise field_refused("metadata", "must be an object")
    for key in metadata:
        if key != "user_id":
            raise field_refused(f"metadata.{key}", "is not a metadata field (only user_id is)")
    user_id = metadata.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise field_refused("metadata.user_id", "must be a string")
    return (session_header or user_id or "")[:SESSION_MAX_CHARS]


def parse_messages_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None = None,
    headers: Mapping[str, str] | None = None,
    cache_control: str | None = None,
    count_only: bool = False,
) -> tuple[GatewayRequest, bool]:
    """`(request, stream)` from a Messages body. `count_only` reads a count_tokens body, where
    `max_tokens` is not asked for."""
    try:
        return _messages_request(
            body,
            caller=caller,
            session_header=session_header,
            cache_control=cache_control,
            count_only=count_only,
            headers=headers,
        )
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc


def _messages_request(
    body: Any,
    *,
    caller: Caller,
    session_header: str | None,
    cache_control: str | None,
    count_only: bool,
    headers: Mapping[str, str] | None = None,
) -> tuple[GatewayRequest, bool]:
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    # What cannot be logged is refused before it is answered (routing/validation.py).
    nul_check(body)
    nul_check(session_header, "x-session-id")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise field_refused("model", "is required (a model, a policy name or 'auto')")
    text_check(model, "model", MODEL_MAX_CHARS)
    max_tokens = max_tokens_check(body.get("max_tokens"), "max_tokens")
    if max_tokens is None and not count_only:
        raise field_refused("max_tokens", "is required (an integer, the most tokens to generate)")
    system = body.get("system")
    system_text = None if system is None else _blocks(system, "system", images_from="system")[0]
    stop = body.get("stop_sequences")
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop)
    ):
        raise field_refused("stop_sequences", "must be a list of non-empty strings")
    top_k = body.get("top_k")
    # Accepted as a sampling hint and not passed on: the common request has no top_k.
    if top_k is not None and (type(top_k) is not int or top_k < 0):
        raise field_refused("top_k", "must be a non-negative integer")
    tools = _tools(body.get("tools"))
    tool_choice, parallel = _tool_choice(body.get("tool_choice"), tools)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise field_refused("stream", "must be a boolean")
    use_cache = body.get("cache", True)
    if not isinstance(use_cache, bool):
        raise field_refused("cache", "must be a boolean")
    messages = parse_messages(body.get("messages"))
    if system_text:
        messages = (Message(role="system", content=system_text), *messages)
    request = GatewayRequest(
        messages=messages,
        entry_point=RequestLog.EntryPoint.ANTHROPIC,
        caller=caller,
        model=model,
        max_tokens=max_tokens,
        temperature=number_field(body, "temperature", 0, 1),
        top_p=number_field(body, "top_p", 0, 1),
        stop=tuple(stop or ()),
        session_id=_session(body, session_header),
        # Anthropic's metadata holds only user_id: project and tags come from the headers.
        metadata=metadata_read(body=body.get("metadata"), headers=headers, keys=("user_id",)),
        use_cache=use_cache and not cache_control_opts_out(cache_control),
        buffered=not stream,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        tool_arguments_objects=True,
    )
    return request, stream


async def body_read(request: HttpRequest, caller: Caller, *, logged: bool) -> Any:
    """The request's JSON body; a body that is not JSON is refused (and logged when the
    request would have been)."""
    return await json_body(request, caller, entry_point="anthropic", logged=logged)


async def caller_read(request: HttpRequest) -> Caller:
    body_size_check(request)
    caller = await caller_from_key(request)
    if caller is None:
        raise GatewayError("AUTHENTICATION_FAILED", AUTH_MESSAGE)
    return caller


async def messages_request_read(request: HttpRequest) -> tuple[GatewayRequest, bool]:
    caller = await caller_read(request)
    body = await body_read(request, caller, logged=True)
    try:
        return parse_messages_request(
            body,
            caller=caller,
            session_header=request.headers.get("x-session-id"),
            cache_control=request.headers.get("cache-control"),
            headers=request.headers,
        )
    except GatewayError as exc:
        await refusal_logged(exc, entry_point="anthropic", caller=caller, model=model_of(body))
        raise
