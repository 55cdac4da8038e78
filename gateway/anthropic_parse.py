"""The Anthropic door's requests: a Messages body (`/v1/messages`, `/v1/messages/count_tokens`),
checked field by field, into the common `GatewayRequest`. Content blocks other than text and
images (base64, in user turns) are refused naming the block, never dropped; a body that cannot
be answered is refused here, and its refusal logged, before anything is admitted or routed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from analytics.models import RequestLog
from gateway.auth import GatewayError, body_size_check, caller_from_key
from gateway.images import image_of_base64
from gateway.refusals import field_refused, json_body, model_of, number_field, refusal_logged
from providers.adapters.types import Image, Message
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


def _blocks(content: Any, field: str, *, images_from: str | None) -> tuple[str, tuple[Image, ...]]:
    """The text of a string or of a list of text blocks, and the images of its `image` blocks
    (base64 only) in their order. `images_from` names who sent `content` when images are not
    accepted there (only user turns carry them); any other block is refused."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise field_refused(field, "must be a string or a list of content blocks")
    texts = []
    images = []
    for index, block in enumerate(content):
        where = f"{field}[{index}]"
        if not isinstance(block, dict):
            raise field_refused(where, "must be an object")
        kind = block.get("type")
        if kind == "image":
            if images_from is not None:
                raise field_refused(
                    where, f"image blocks are accepted in user turns only, not in {images_from}"
                )
            images.append(_image_block(block, where))
            continue
        if kind == "document":
            raise field_refused(
                where,
                "document blocks are not supported: this gateway passes text and images only "
                "to its models, so a request with one is refused rather than answered without it",
            )
        if kind != "text":
            raise field_refused(
                f"{where}.type",
                "only 'text' and 'image' content blocks are supported (no documents, tool use "
                "or thinking blocks)",
            )
        if not isinstance(block.get("text"), str):
            raise field_refused(f"{where}.text", "must be a string")
        texts.append(block["text"])
    # Blocks are separate passages to the model: kept apart, not run together.
    return "\n\n".join(texts), tuple(images)


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise field_refused("messages", "must be a non-empty list")
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise field_refused(f"messages[{index}]", "must be an object")
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise field_refused(
                f"messages[{index}].role", "must be 'user', 'assistant' or 'system'"
            )
        text, images = _blocks(
            item.get("content"),
            f"messages[{index}].content",
            images_from=None if role == "user" else f"{role} turns",
        )
        messages.append(Message(role=role, content=text, images=images))  # type: ignore[arg-type]
    return tuple(messages)


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
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise field_refused("tools", "must be a list")
    if tools:
        raise field_refused("tools", "tool use is not supported by this gateway")
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
