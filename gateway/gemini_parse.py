"""A Gemini `generateContent` body read into the common `GatewayRequest`.

Fields are read by their JSON names (`systemInstruction`, `maxOutputTokens`) or by their proto
names (`system_instruction`, `max_output_tokens`), as Google's own parser accepts both.

The common request carries text, inline images and function calling
(`providers.adapters.types.Message`): an `inlineData` part holding an image in a user turn is
passed on (to models that accept images); `tools[].functionDeclarations`, `toolConfig`, a model
turn's `functionCall` parts and the `functionResponse` parts answering them, and JSON mode
(`responseMimeType: application/json`, `responseSchema`, `responseJsonSchema`) are read by
gateway/gemini_tools.py. Any other part that is not text (images in a model turn or the system
instruction, other media, `fileData` URIs, which the gateway does not fetch, code execution) is
refused with INVALID_ARGUMENT naming it, never dropped; so are the settings that would change
the answer's form and that no provider here carries (Google's own tools, other response types,
several candidates). Sampling hints the common request has no place for (`topK`, `seed`,
penalties, `thinkingConfig`) and `safetySettings` are accepted and not passed on. A field Google
does not know is refused, as Google refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analytics.models import RequestLog
from gateway.gemini_names import fields_named, json_name
from gateway.gemini_tools import (
    function_call_of,
    function_response_of,
    response_format_of,
    tool_choice_of,
    tools_of,
)
from gateway.images import image_of_base64
from gateway.refusals import field_refused, number_field
from providers.adapters.types import Image, Message, ToolCall
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

# `function` is the role older Gemini clients give the turn of `functionResponse` parts.
ROLES = ("user", "model", "function")
REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
    "model",
}
CONFIG_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
    "speechConfig",
    "enableEnhancedCivicAnswers",
}
# Parts other than text, by JSON name; each is refused with its own name where not accepted.
INLINE_DATA = "inlineData"
FILE_DATA = "fileData"
FUNCTION_CALL = "functionCall"
THOUGHT_SIGNATURE = "thoughtSignature"
FUNCTION_RESPONSE = "functionResponse"
CODE_PARTS = ("executableCode", "codeExecutionResult")
MAX_STOP_SEQUENCES = 5


def _inline_image(raw: Any, where: str) -> Image:
    """The image of an `inlineData` blob (`mimeType` and base64 `data`, by either name). The
    data may be URL-safe base64, as Google reads bytes either way (and as google-genai sends
    them); the image carries it in standard base64, the form every provider reads."""
    if not isinstance(raw, dict):
        raise field_refused(where, "must be an object with mimeType and data")
    blob = {json_name(name): value for name, value in raw.items()}
    data = blob.get("data")
    if isinstance(data, str):
        data = _standard_base64(data).rstrip("=")
        data += "=" * (-len(data) % 4)
    return image_of_base64(blob.get("mimeType"), data, where)


def _standard_base64(text: str) -> str:
    """A bytes field's base64 in the standard alphabet: Gemini writes `+` and `/`, the
    google-genai SDK (and Google's JSON, which accepts both) the URL-safe `-` and `_`."""
    return text.replace("-", "+").replace("_", "/")


@dataclass
class _Turn:
    """A turn's parts: its text, its images, and its `functionCall` and `functionResponse`
    parts (each with where it is)."""

    text: str
    images: tuple[Image, ...]
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # The `thoughtSignature` beside each call (a thinking model's, which Gemini 3 requires back).
    signatures: list[str | None] = field(default_factory=list)
    responses: list[tuple[str, Any]] = field(default_factory=list)


def _parts(parts: Any, where: str, *, images_from: str | None) -> _Turn:
    """The text of a turn's parts, the images of its `inlineData` parts and its function
    parts, in their order. `images_from` names who sent them when images are not accepted
    there (only user turns carry them)."""
    if not isinstance(parts, list) or not parts:
        raise field_refused(f"{where}.parts", "must be a non-empty list of parts")
    turn = _Turn(text="", images=())
    texts = []
    images = []
    for index, raw in enumerate(parts):
        part_at = f"{where}.parts[{index}]"
        if not isinstance(raw, dict):
            raise field_refused(part_at, "must be an object")
        part = {json_name(name): value for name, value in raw.items()}
        if FILE_DATA in part:
            raise field_refused(
                f"{part_at}.{FILE_DATA}",
                "file URIs are not supported: this gateway does not fetch files or images; "
                "send an image inline as inlineData (mimeType and base64 data)",
            )
        if INLINE_DATA in part:
            if images_from is not None:
                raise field_refused(
                    f"{part_at}.{INLINE_DATA}",
                    f"images are accepted in user turns only, not in {images_from}",
                )
            images.append(_inline_image(part[INLINE_DATA], f"{part_at}.{INLINE_DATA}"))
            continue
        if FUNCTION_CALL in part:
            signature = part.get(THOUGHT_SIGNATURE)
            if signature is not None and not isinstance(signature, str):
                raise field_refused(f"{part_at}.{THOUGHT_SIGNATURE}", "must be a string")
            turn.calls.append((f"{part_at}.{FUNCTION_CALL}", part[FUNCTION_CALL]))
            # The same bytes go upstream, written as Gemini writes them.
            turn.signatures.append(_standard_base64(signature) if signature else None)
            continue
        if FUNCTION_RESPONSE in part:
            turn.responses.append((f"{part_at}.{FUNCTION_RESPONSE}", part[FUNCTION_RESPONSE]))
            continue
        code = next((name for name in CODE_PARTS if name in part), None)
        if code is not None:
            raise field_refused(f"{part_at}.{code}", "code execution is not supported")
        if part.get("thought") is True:
            continue  # a model's own thinking, sent back: not part of the conversation
        text = part.get("text")
        if not isinstance(text, str):
            raise field_refused(
                f"{part_at}.text",
                "must be a string (only text, inlineData and function parts are supported)",
            )
        texts.append(text)
    # Parts are separate passages to the model: kept apart, not run together.
    turn.text = "\n\n".join(texts)
    turn.images = tuple(images)
    return turn


def parse_contents(raw: Any) -> tuple[Message, ...]:
    """The turns. A model turn's `functionCall` parts are its tool calls; the
    `functionResponse` parts of the user turn after it are `tool` turns answering them (before
    that turn's own text, if any)."""
    if not isinstance(raw, list) or not raw:
        raise field_refused("contents", "must be a non-empty list of Content objects")
    messages: list[Message] = []
    calls: tuple[ToolCall, ...] = ()
    answered: set[str] = set()
    for index, item in enumerate(raw):
        where = f"contents[{index}]"
        if not isinstance(item, dict):
            raise field_refused(where, "must be an object")
        # A single turn may leave its role out; Google reads it as the user's.
        role = item.get("role", "user")
        if not isinstance(role, str) or role not in ROLES:
            raise field_refused(f"{where}.role", "must be 'user', 'model' or 'function'")
        turn = _parts(
            item.get("parts"), where, images_from="model turns" if role == "model" else None
        )
        if role == "model":
            if turn.responses:
                raise field_refused(
                    turn.responses[0][0], "is read only in user turns, after the model's call"
                )
            calls = tuple(
                function_call_of(
                    call, at, default_id=f"call_{index}_{n}", signature=turn.signatures[n]
                )
                for n, (at, call) in enumerate(turn.calls)
            )
            answered = set()
            messages.append(Message(role="assistant", content=turn.text, tool_calls=calls))
            continue
        if turn.calls:
            raise field_refused(turn.calls[0][0], "is read only in model turns")
        messages += [
            function_response_of(response, at, calls=calls, answered=answered)
            for at, response in turn.responses
        ]
        if role == "function" and (turn.text or turn.images):
            raise field_refused(
                f"{where}.parts", "a function turn holds functionResponse parts only"
            )
        if turn.text or turn.images or not turn.responses:
            messages.append(Message(role="user", content=turn.text, images=turn.images))
    return tuple(messages)


def _system(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise field_refused("systemInstruction", "must be a Content object with text parts")
    turn = _parts(raw.get("parts"), "systemInstruction", images_from="systemInstruction")
    function_parts = turn.calls + turn.responses
    if function_parts:
        raise field_refused(function_parts[0][0], "is read only in contents")
    return turn.text


def _number(config: dict[str, Any], field: str, low: float, high: float) -> float | None:
    return number_field(config, field, low, high, name=f"generationConfig.{field}")


def _stop(config: dict[str, Any]) -> tuple[str, ...]:
    stop = config.get("stopSequences")
    if stop is None:
        return ()
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in stop)
    ):
        raise field_refused(
            "generationConfig.stopSequences",
            f"must be a list of up to {MAX_STOP_SEQUENCES} non-empty strings",
        )
    return tuple(stop)


def _config(raw: Any) -> dict[str, Any]:
    """The generation config by JSON names, with what cannot be honoured refused."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise field_refused("generationConfig", "must be an object")
    config = fields_named(raw, CONFIG_FIELDS, "generationConfig")
    count = config.get("candidateCount")
    if count is not None and (type(count) is not int or count != 1):
        raise field_refused("generationConfig.candidateCount", "only 1 candidate is supported")
    if config.get("speechConfig") is not None:
        raise field_refused("generationConfig.speechConfig", "is not supported by this gateway")
    modalities = config.get("responseModalities")
    if modalities is not None and modalities not in ([], ["TEXT"]):
        raise field_refused("generationConfig.responseModalities", "only TEXT is supported")
    if config.get("responseLogprobs") is True:
        raise field_refused(
            "generationConfig.responseLogprobs", "log probabilities are not supported"
        )
    top_k = config.get("topK")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int | float)):
        raise field_refused("generationConfig.topK", "must be a number")
    return config


def parse_generate_request(
    body: Any,
    *,
    model: str,
    caller: Caller,
    stream: bool,
    session_header: str | None = None,
    cache_control: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> GatewayRequest:
    """The common request of a `generateContent` body for the model named in the path."""
    try:
        return _generate_request(
            body,
            model=model,
            caller=caller,
            stream=stream,
            session_header=session_header,
            cache_control=cache_control,
            headers=headers,
        )
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc


def _generate_request(
    body: Any,
    *,
    model: str,
    caller: Caller,
    stream: bool,
    session_header: str | None,
    cache_control: str | None,
    headers: Mapping[str, str] | None,
) -> GatewayRequest:
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    # What cannot be logged is refused before it is answered (routing/validation.py).
    nul_check(body)
    nul_check(session_header, "x-session-id")
    if not model:
        raise field_refused(
            "model", "is required in the path: /v1beta/models/{model}:generateContent"
        )
    text_check(model, "model", MODEL_MAX_CHARS)
    fields = fields_named(body, REQUEST_FIELDS, "")
    tools, tool_choice = tool_choice_of(fields.get("toolConfig"), tools_of(fields.get("tools")))
    if fields.get("cachedContent") is not None:
        raise field_refused("cachedContent", "cached contents are not supported by this gateway")
    safety = fields.get("safetySettings")
    if safety is not None and not isinstance(safety, list):
        raise field_refused("safetySettings", "must be a list")
    messages = parse_contents(fields.get("contents"))
    system = _system(fields.get("systemInstruction"))
    if system:
        messages = (Message(role="system", content=system), *messages)
    config = _config(fields.get("generationConfig"))
    return GatewayRequest(
        messages=messages,
        entry_point=RequestLog.EntryPoint.GEMINI,
        caller=caller,
        model=model,
        max_tokens=max_tokens_check(
            config.get("maxOutputTokens"), "generationConfig.maxOutputTokens"
        ),
        temperature=_number(config, "temperature", 0, 2),
        top_p=_number(config, "topP", 0, 1),
        stop=_stop(config),
        session_id=(session_header or "")[:SESSION_MAX_CHARS],
        # Gemini's body has no metadata: the x-orchestrator-* headers carry it.
        metadata=metadata_read(headers=headers),
        use_cache=not cache_control_opts_out(cache_control),
        buffered=not stream,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format_of(config),
        tool_arguments_objects=True,
    )
