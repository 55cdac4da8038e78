"""The Gemini door's models: `GET /v1beta/models` (paged) and `GET /v1beta/models/{model}`.

The names are the ones every door accepts: `auto` (the default policy), each routing policy,
and each enabled model as `provider:model`, each as Google names a model (`models/<name>`). A
model's bare name is found too when one provider serves it, as the pipeline resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse

from core.threads import in_thread
from gateway.apikeys import apikey_authenticate
from gateway.auth import GatewayError
from gateway.gemini_wire import (
    AUTH_MESSAGE,
    gemini_error,
    gemini_json,
    gemini_view,
    key_presented,
    method_refusal,
    not_found_message,
)
from providers.models import LLMModel
from routing.models import RoutingPolicy

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


@dataclass(frozen=True)
class GeminiModel:
    name: str
    bare_name: str
    """The model's own name without its provider (a policy's name for a policy)."""
    description: str
    input_token_limit: int | None = None
    output_token_limit: int | None = None
    is_policy: bool = False

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"models/{self.name}",
            "baseModelId": self.name,
            "version": "gateway",
            "displayName": self.name,
            "description": self.description,
        }
        if self.input_token_limit is not None:
            body["inputTokenLimit"] = self.input_token_limit
        if self.output_token_limit is not None:
            body["outputTokenLimit"] = self.output_token_limit
        body["supportedGenerationMethods"] = METHODS
        return body


def gemini_models() -> tuple[GeminiModel, ...]:
    """`auto`, the routing policies by name, then the enabled models by `provider:model`."""
    policies = RoutingPolicy.objects.order_by("name").values_list("name", flat=True)
    rows = (
        LLMModel.objects.filter(enabled=True, provider__enabled=True)
        .select_related("provider")
        .order_by("provider__name", "name")
    )
    return (
        GeminiModel("auto", "auto", "The default routing policy.", is_policy=True),
        *(GeminiModel(p, p, "A routing policy.", is_policy=True) for p in policies),
        *(
            GeminiModel(
                f"{m.provider.name}:{m.name}",
                m.name,
                f"{m.name}, served by the provider {m.provider.name}.",
                m.context_window,
                m.max_output_tokens,
            )
            for m in rows
        ),
    )


def gemini_model_find(models: tuple[GeminiModel, ...], requested: str) -> GeminiModel | None:
    """The model a client's name means; None when none or several do."""
    exact = [m for m in models if m.name == requested]
    if exact:
        return exact[0]
    bare = [m for m in models if not m.is_policy and m.bare_name == requested]
    return bare[0] if len(bare) == 1 else None


async def _authenticated(request: HttpRequest) -> None:
    raw = key_presented(request)
    if raw is None or await apikey_authenticate(raw) is None:
        raise GatewayError("AUTHENTICATION_FAILED", AUTH_MESSAGE)


def _page(request: HttpRequest) -> tuple[int, int]:
    """`(offset, size)` from `pageToken` and `pageSize`."""
    raw_size = request.GET.get("pageSize", "")
    raw_token = request.GET.get("pageToken", "")
    if raw_size and not raw_size.isdigit():
        raise GatewayError("INVALID_REQUEST", "pageSize: must be a non-negative integer")
    if raw_token and not raw_token.isdigit():
        raise GatewayError("INVALID_REQUEST", "pageToken: not a token this gateway gave")
    size = int(raw_size) if raw_size else 0
    return int(raw_token or 0), min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@gemini_view
async def models_list(request: HttpRequest) -> HttpResponse:
    refused = method_refusal(request, "GET", "HEAD")
    if refused is not None:
        return refused
    await _authenticated(request)
    offset, size = _page(request)
    models = await in_thread(gemini_models)()
    body: dict[str, Any] = {"models": [m.as_json() for m in models[offset : offset + size]]}
    if offset + size < len(models):
        body["nextPageToken"] = str(offset + size)
    return gemini_json(body)


async def model_get(request: HttpRequest, name: str) -> HttpResponse:
    """One model; called by `gateway.gemini.model_resource`, which wraps it."""
    refused = method_refusal(request, "GET", "HEAD")
    if refused is not None:
        return refused
    await _authenticated(request)
    model = gemini_model_find(await in_thread(gemini_models)(), name)
    if model is None:
        return gemini_error(not_found_message(name), 404)
    return gemini_json(model.as_json())
