"""Embeddings, one function per wire protocol, chosen by provider kind in `EMBEDDERS`:

- OpenAI and OpenAI-compatible servers (llama.cpp's included): `POST {base}/embeddings` with
  `{"model", "input": [texts], "encoding_format": "float"[, "dimensions"]}`; the answer's
  `data[].embedding` in `data[].index` order and `usage.prompt_tokens`.
- Ollama: `POST {base}/api/embed` with `{"model", "input": [texts][, "dimensions"]}`; the answer's
  `embeddings` (one per input, in order) and `prompt_eval_count`.
- Gemini: `POST {base}/v1beta/models/{model}:batchEmbedContents` with one
  `{"model": "models/{model}", "content": {"parts": [{"text"}]}[, "outputDimensionality"]}` per
  input; the answer's `embeddings[].values`. Gemini reports no token count: usage is None and the
  caller counts the inputs' tokens itself.

Vectors always come back as floats; the door encodes them (base64) for its client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from providers.adapters.types import Endpoint, InvalidResponse, Usage
from providers.adapters.upstream import join_url, request_json


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None


def _bearer(endpoint: Endpoint) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if endpoint.api_key:
        headers["authorization"] = f"Bearer {endpoint.api_key}"
    return headers


def _vector(raw: Any, where: str) -> tuple[float, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in raw
    ):
        raise InvalidResponse(f"{where} is not a list of numbers")
    return tuple(float(v) for v in raw)


def _count_check(vectors: tuple[tuple[float, ...], ...], request: EmbeddingRequest) -> None:
    if len(vectors) != len(request.inputs):
        raise InvalidResponse(f"{len(vectors)} embeddings for {len(request.inputs)} inputs")


async def openai_embed(endpoint: Endpoint, request: EmbeddingRequest) -> EmbeddingResult:
    payload: dict[str, Any] = {
        "model": request.model,
        "input": list(request.inputs),
        "encoding_format": "float",
    }
    if request.dimensions is not None:
        payload["dimensions"] = request.dimensions
    body = await request_json(
        endpoint,
        "POST",
        join_url(endpoint.base_url, "embeddings"),
        headers=_bearer(endpoint),
        json_body=payload,
    )
    try:
        items = sorted(body["data"], key=lambda item: int(item["index"]))
        vectors = tuple(
            _vector(item["embedding"], f"data[{i}].embedding") for i, item in enumerate(items)
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidResponse(
            "embeddings answer has no data[].index and data[].embedding"
        ) from None
    _count_check(vectors, request)
    usage = body.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return EmbeddingResult(vectors, Usage(input=int(tokens)) if isinstance(tokens, int) else None)


async def ollama_embed(endpoint: Endpoint, request: EmbeddingRequest) -> EmbeddingResult:
    payload: dict[str, Any] = {"model": request.model, "input": list(request.inputs)}
    if request.dimensions is not None:
        payload["dimensions"] = request.dimensions
    body = await request_json(
        endpoint,
        "POST",
        join_url(endpoint.base_url, "api/embed"),
        headers=_bearer(endpoint),
        json_body=payload,
    )
    raw = body.get("embeddings") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise InvalidResponse("embed answer has no embeddings")
    vectors = tuple(_vector(v, f"embeddings[{i}]") for i, v in enumerate(raw))
    _count_check(vectors, request)
    tokens = body.get("prompt_eval_count")
    return EmbeddingResult(vectors, Usage(input=tokens) if isinstance(tokens, int) else None)


async def gemini_embed(endpoint: Endpoint, request: EmbeddingRequest) -> EmbeddingResult:
    name = request.model.removeprefix("models/")
    headers = {"accept": "application/json"}
    if endpoint.api_key:
        headers["x-goog-api-key"] = endpoint.api_key
    items = []
    for text in request.inputs:
        item: dict[str, Any] = {"model": f"models/{name}", "content": {"parts": [{"text": text}]}}
        if request.dimensions is not None:
            item["outputDimensionality"] = request.dimensions
        items.append(item)
    body = await request_json(
        endpoint,
        "POST",
        join_url(endpoint.base_url, f"v1beta/models/{quote(name, safe='')}:batchEmbedContents"),
        headers=headers,
        json_body={"requests": items},
    )
    raw = body.get("embeddings") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise InvalidResponse("batchEmbedContents answer has no embeddings")
    vectors = tuple(
        _vector(v.get("values") if isinstance(v, dict) else None, f"embeddings[{i}].values")
        for i, v in enumerate(raw)
    )
    _count_check(vectors, request)
    return EmbeddingResult(vectors, None)


Embedder = Callable[[Endpoint, EmbeddingRequest], Awaitable[EmbeddingResult]]

EMBEDDERS: dict[str, Embedder] = {
    "openai": openai_embed,
    "openai_compatible": openai_embed,
    "ollama": ollama_embed,
    "gemini": gemini_embed,
}
