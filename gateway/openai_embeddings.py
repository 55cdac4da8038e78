"""`POST /v1/embeddings` in OpenAI's wire shape. The body is checked field by field into a
`GatewayRequest` marked as an embeddings request (one user message per input), which takes the
same path as a chat completion (`chat_stream`: API key, rate limit, budget hold and settlement,
one request-log row with its tokens and cost); its `Finished` carries the vectors.

Inputs are a string or a list of strings; token-id inputs (a list of integers, or of lists of
integers) are refused by name: the gateway routes across providers whose tokenizers differ.
"""

from __future__ import annotations

import base64
import contextlib
import struct
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from analytics.models import RequestLog
from gateway.auth import GatewayError, body_size_check, caller_from_key, rate_limit_headers
from gateway.openai import _error_of, _failure, openai_error
from gateway.refusals import field_refused, json_body, model_of, refusal_logged
from gateway.shaping import json_response, orchestrator_headers
from providers.adapters.types import Message
from routing.pipeline.events import Caller, EmbeddingWanted, Failed, Finished, GatewayRequest
from routing.pipeline.journal import journaled
from routing.services import chat_stream
from routing.validation import MODEL_MAX_CHARS, FieldInvalid, nul_check, text_check

MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")
READ_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def parse_embedding_request(body: Any, *, caller: Caller) -> tuple[GatewayRequest, str]:
    """`(request, encoding_format)` from an embeddings body, or GatewayError naming the field."""
    if not isinstance(body, dict):
        raise field_refused("body", "must be a JSON object")
    try:
        nul_check(body)
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc
    for name in body:
        if name not in READ_FIELDS:
            raise field_refused(name, "unknown field")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise field_refused("model", "is required (an embedding model or 'auto')")
    try:
        text_check(model, "model", MODEL_MAX_CHARS)
    except FieldInvalid as exc:
        raise field_refused(exc.field, exc.message) from exc
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise field_refused("input", "must be a string or a non-empty list of strings")
    if len(texts) > MAX_INPUTS:
        raise field_refused("input", f"must hold at most {MAX_INPUTS} items")
    for index, text in enumerate(texts):
        if isinstance(text, int | list) and not isinstance(text, bool):
            raise field_refused(
                "input",
                "token-id input is not supported: send the text (the gateway routes across "
                "providers whose tokenizers differ)",
            )
        if not isinstance(text, str):
            raise field_refused(f"input[{index}]", "must be a string")
        if not text.strip():
            raise field_refused(f"input[{index}]", "must not be empty")
    encoding = body.get("encoding_format", "float")
    if encoding not in ENCODINGS:
        raise field_refused("encoding_format", "must be float or base64")
    dimensions = body.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise field_refused("dimensions", "must be a positive integer")
    user = body.get("user", "")
    if not isinstance(user, str):
        raise field_refused("user", "must be a string")
    request = GatewayRequest(
        messages=tuple(Message(role="user", content=text) for text in texts),
        entry_point=RequestLog.EntryPoint.EMBEDDINGS,
        caller=caller,
        model=model,
        session_id=user[:128],
        use_cache=False,
        buffered=True,
        embedding=EmbeddingWanted(dimensions=dimensions),
    )
    return request, str(encoding)


def _encoded(vector: tuple[float, ...], encoding: str) -> list[float] | str:
    """OpenAI's base64 is the little-endian float32 array's bytes."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)


def embeddings_body(event: Finished, encoding: str) -> dict[str, Any]:
    tokens = event.usage.input + event.usage.cached
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encoded(vector, encoding)}
            for index, vector in enumerate(event.embeddings)
        ],
        "model": event.model_ref,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return openai_error("INVALID_REQUEST", "Use POST.", 405)
    try:
        body_size_check(request)
        caller = await caller_from_key(request)
        if caller is None:
            raise GatewayError("AUTHENTICATION_FAILED", "Missing, invalid or revoked API key.")
        body = await json_body(request, caller, entry_point=RequestLog.EntryPoint.EMBEDDINGS)
        try:
            gateway_request, encoding = parse_embedding_request(body, caller=caller)
        except GatewayError as exc:
            await refusal_logged(
                exc,
                entry_point=RequestLog.EntryPoint.EMBEDDINGS,
                caller=caller,
                model=model_of(body),
            )
            raise
    except GatewayError as exc:
        return _error_of(exc)
    request_id = str(gateway_request.request_id)
    events = journaled(chat_stream(gateway_request), request=gateway_request)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return _failure(event, request_id)
            if isinstance(event, Finished):
                headers = orchestrator_headers(request_id, event) | rate_limit_headers(
                    event.rate_limit
                )
                return json_response(embeddings_body(event, encoding), headers=headers)
    raise RuntimeError("chat_stream ended without a terminal event")
