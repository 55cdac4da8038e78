"""The Ollama door's model list: `/api/tags`, `/api/show` and `/api/version`.

An Ollama client lists, shows and then names a model. The names here are the ones every door
accepts: `auto` (the default policy), each routing policy, and each enabled model as
`provider:model`. A name may carry Ollama's default tag `:latest`, which is dropped; a model's
bare name is found when one provider serves it. Sizes are 0 and digests are the name's hash:
nothing is stored here, the gateway forwards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from core.threads import in_thread
from gateway.auth import GatewayError, caller_from_key
from gateway.ollama_parse import model_name
from gateway.ollama_wire import (
    KEY_REFUSED,
    not_found_message,
    ollama_error,
    ollama_json,
    ollama_time,
)
from providers.models import LLMModel
from routing.models import RoutingPolicy

# The Ollama release whose API this door speaks; clients check it before using newer fields.
OLLAMA_VERSION = "0.12.0"
POLICY_FAMILY = "policy"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OllamaModel:
    name: str
    bare_name: str
    """The model's own name without its provider (a policy's name for a policy)."""
    family: str
    """The provider's kind (`openai`, `ollama`, ...), or `policy` for `auto` and policies."""
    modified_at: datetime
    context_window: int | None
    accepts_images: bool = False
    """Marked as reading images: `/api/show` lists the `vision` capability, as Ollama does."""
    accepts_tools: bool = False
    """Marked as calling tools: `/api/show` lists the `tools` capability, as Ollama does."""

    def capabilities(self) -> list[str]:
        """What `/api/show` lists, in Ollama's order."""
        return [
            "completion",
            *(["tools"] if self.accepts_tools else []),
            *(["vision"] if self.accepts_images else []),
        ]


def ollama_models() -> tuple[OllamaModel, ...]:
    """`auto`, the routing policies by name, then the enabled models by `provider:model`."""
    policies = list(RoutingPolicy.objects.order_by("name").only("name", "is_default", "updated_at"))
    default = next((p.updated_at for p in policies if p.is_default), EPOCH)
    rows = (
        LLMModel.objects.filter(enabled=True, provider__enabled=True)
        .select_related("provider")
        .order_by("provider__name", "name")
    )
    return (
        OllamaModel("auto", "auto", POLICY_FAMILY, default, None),
        *(OllamaModel(p.name, p.name, POLICY_FAMILY, p.updated_at, None) for p in policies),
        *(
            OllamaModel(
                f"{m.provider.name}:{m.name}",
                m.name,
                m.provider.kind,
                m.provider.updated_at,
                m.context_window,
                m.accepts_images,
                m.accepts_tools,
            )
            for m in rows
        ),
    )


def ollama_model_find(models: tuple[OllamaModel, ...], requested: str) -> OllamaModel | None:
    """The model a client's name means, as the pipeline resolves it; None when none or several
    do."""
    name = model_name(requested)
    exact = [m for m in models if m.name == name]
    if exact:
        return exact[0]
    bare = [m for m in models if m.family != POLICY_FAMILY and m.bare_name == name]
    return bare[0] if len(bare) == 1 else None


def _details(model: OllamaModel) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gateway",
        "family": model.family,
        "families": [model.family],
        "parameter_size": "",
        "quantization_level": "",
    }


async def _authenticated(request: HttpRequest) -> HttpResponse | None:
    """None for a caller with a valid key; else the refusal to answer."""
    try:
        caller = await caller_from_key(request)
    except GatewayError as exc:
        return ollama_error(exc.message, exc.status)
    return None if caller is not None else ollama_error(KEY_REFUSED, 401)


def _method_refusal(request: HttpRequest, *allowed: str) -> HttpResponse | None:
    if request.method in allowed:
        return None
    return ollama_error(f"Use {' or '.join(allowed)}.", 405, headers={"Allow": ", ".join(allowed)})


@csrf_exempt
async def version(request: HttpRequest) -> HttpResponse:
    """Open, as Ollama's is: it tells only which API a client can expect."""
    refused = _method_refusal(request, "GET", "HEAD")
    return refused or ollama_json({"version": OLLAMA_VERSION})


@csrf_exempt
async def tags(request: HttpRequest) -> HttpResponse:
    refused = _method_refusal(request, "GET", "HEAD") or await _authenticated(request)
    if refused is not None:
        return refused
    listed = [
        {
            "name": model.name,
            "model": model.name,
            "modified_at": ollama_time(model.modified_at),
            "size": 0,
            "digest": hashlib.sha256(model.name.encode()).hexdigest(),
            "details": _details(model),
        }
        for model in await in_thread(ollama_models)()
    ]
    return ollama_json({"models": listed})


@csrf_exempt
async def show(request: HttpRequest) -> HttpResponse:
    refused = _method_refusal(request, "POST") or await _authenticated(request)
    if refused is not None:
        return refused
    try:
        body = orjson.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return ollama_error(f"body: not valid JSON ({exc})", 400)
    # `name` is the field's old name, still sent by older clients.
    requested = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
    if not isinstance(requested, str) or not requested:
        return ollama_error("model is required", 400)
    model = ollama_model_find(await in_thread(ollama_models)(), requested)
    if model is None:
        return ollama_error(not_found_message(requested), 404)
    info: dict[str, Any] = {"general.architecture": model.family, "general.basename": model.name}
    if model.context_window is not None:
        info[f"{model.family}.context_length"] = model.context_window
    return ollama_json(
        {
            "license": "",
            "modelfile": f"# {model.name}, served by the LLM Orchestrator gateway\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": _details(model),
            "model_info": info,
            "capabilities": model.capabilities(),
            "modified_at": ollama_time(model.modified_at),
        }
    )
