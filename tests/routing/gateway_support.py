"""Shared set-up of the gateway tests: a registry whose providers are the local upstream server,
API keys, and helpers to wait for the request log (written after the answer)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.core.cache import cache

from analytics.models import RequestLog
from gateway.apikeys import apikey_create
from providers.models import LLMModel, Provider
from routing.config.cache import SHARED_TTL_S
from routing.engine.taxonomy import TASK_TYPES
from routing.models import RoutingPolicy, RoutingRule, RuleFallback
from tests.providers.upstream_server import UpstreamServer


def upstream_models(upstream: UpstreamServer) -> dict[str, LLMModel]:
    """`alpha` and `beta`: standard tier, priced, each behind its own OpenAI-compatible
    provider on the local upstream server (`/alpha/v1`, `/beta/v1`)."""
    models = {}
    for name, price_in, price_out in (
        ("alpha", Decimal("1.25"), Decimal("10")),
        ("beta", Decimal("0.15"), Decimal("0.60")),
    ):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstream.url}/{name}/v1",
            locality="cloud",
        )
        models[name] = LLMModel.objects.create(
            provider=provider,
            name=f"{name}-model",
            tier="standard",
            input_price_per_mtok_usd=price_in,
            output_price_per_mtok_usd=price_out,
        )
    return models


def baseline_model(upstream: UpstreamServer, *, enabled: bool) -> LLMModel:
    """The premium baseline `premium:big` that savings are measured against."""
    premium = Provider.objects.create(
        name="premium", kind="openai", base_url=f"{upstream.url}/premium/v1", locality="cloud"
    )
    return LLMModel.objects.create(
        provider=premium,
        name="big",
        tier="premium",
        input_price_per_mtok_usd=Decimal("10"),
        output_price_per_mtok_usd=Decimal("30"),
        is_baseline=True,
        enabled=enabled,
    )


def every_task_to(policy_name: str, primary: LLMModel, fallback: LLMModel) -> RoutingPolicy:
    """The default policy: every task type to `primary`, then `fallback`."""
    policy = RoutingPolicy.objects.create(name=policy_name, is_default=True)
    for task_type in TASK_TYPES:
        rule = RoutingRule.objects.create(
            policy=policy, task_type=task_type, primary=primary, tiers=[]
        )
        RuleFallback.objects.create(rule=rule, model=fallback, position=1)
    return policy


def gateway_registry(upstream: UpstreamServer) -> dict[str, LLMModel]:
    """Two upstream models: `alpha` (primary) and `beta` (fallback), priced; and a baseline
    that is never routed to."""
    cache.clear()
    models = upstream_models(upstream)
    models["premium"] = baseline_model(upstream, enabled=False)
    every_task_to("gateway-policy", models["alpha"], models["beta"])
    settle_config()
    return models


def tools_registry(
    upstream: UpstreamServer,
    *,
    alpha: tuple[str, ...] = (),
    beta: tuple[str, ...] = (),
) -> dict[str, LLMModel]:
    """`gateway_registry`'s models (alpha first, then beta, for every task), each with the
    capability flags named (`accepts_tools`, `accepts_json_output`) set."""
    cache.clear()
    models = upstream_models(upstream)
    for name, flags in (("alpha", alpha), ("beta", beta)):
        for flag in flags:
            setattr(models[name], flag, True)
        models[name].save()
    models["premium"] = baseline_model(upstream, enabled=False)
    every_task_to("gateway-policy", models["alpha"], models["beta"])
    settle_config()
    return models


def native_tools_registry(
    upstream: UpstreamServer,
    *,
    kind: str,
    provider: str,
    model: str,
    context_window: int,
    prices: tuple[str, str],
) -> LLMModel:
    """`alpha` (no tools) first for every task, then `provider:model`, a model of provider
    `kind` on the local upstream (under `/<provider>`) that accepts tools, priced per million
    input and output tokens."""
    cache.clear()
    models = upstream_models(upstream)
    native = LLMModel.objects.create(
        provider=Provider.objects.create(
            name=provider, kind=kind, base_url=f"{upstream.url}/{provider}", locality="cloud"
        ),
        name=model,
        tier="standard",
        context_window=context_window,
        input_price_per_mtok_usd=Decimal(prices[0]),
        output_price_per_mtok_usd=Decimal(prices[1]),
        accepts_tools=True,
    )
    every_task_to(f"{provider}-policy", models["alpha"], native)
    settle_config()
    return native


def gemini_tools_registry(upstream: UpstreamServer) -> LLMModel:
    """`alpha` (no tools) first for every task, then `google:gemini-tool`, a Gemini model on
    the local upstream (under `/google`) that accepts tools."""
    return native_tools_registry(
        upstream,
        kind="gemini",
        provider="google",
        model="gemini-tool",
        context_window=1_000_000,
        prices=("0.30", "2.50"),
    )


# A function tool as Chat Completions (and Ollama) take it.
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def settle_config() -> None:
    """A server process trusts its last read of the shared configuration version for up to
    `SHARED_TTL_S`; wait that out so the live server routes to this test's rows."""
    time.sleep(SHARED_TTL_S + 0.1)


def chat_path(name: str) -> str:
    return f"/{name}/v1/chat/completions"


def new_key(**options: object) -> str:
    return apikey_create(name="test", **options).plaintext  # type: ignore[arg-type]


def wait_rows(expected: int, timeout_s: float = 30, **filters: object) -> list[RequestLog]:
    """The log rows once `expected` of them exist (they are written after the answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = list(RequestLog.objects.filter(**filters).order_by("created_at"))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
