from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.cache import cache

from providers.models import LLMModel, Provider
from routing import config_cache
from routing.models import RoutingPolicy, RoutingRule, RuleFallback
from routing.taxonomy import TASK_TYPES

# The shared local upstream server, the bundled model and the per-test HTTP client reset.
from tests.providers.conftest import (  # noqa: F401
    _close_http_client,
    local_model_url,
    upstream,
    upstream_server,
)
from tests.providers.upstream_server import UpstreamServer


@pytest.fixture(autouse=True)
def _fresh_routing_state(settings: pytest.FixtureRequest) -> Iterator[None]:
    """Breakers, cached answers, the config version and the agent snapshot start empty."""
    settings.ORCHESTRATOR_AGENT_SAMPLING = "off"  # type: ignore[attr-defined]
    cache.clear()
    config_cache._memo = None
    yield
    cache.clear()
    config_cache._memo = None


def chat_registry(server: UpstreamServer) -> dict[str, LLMModel]:
    """`alpha` answers every task type, `beta` is its fallback; both are upstream paths."""
    models = {}
    for name, price_in, price_out in (
        ("alpha", Decimal("1.25"), Decimal("10")),
        ("beta", Decimal("0.15"), Decimal("0.60")),
    ):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{server.url}/{name}/v1",
            locality="cloud",
        )
        models[name] = LLMModel.objects.create(
            provider=provider,
            name=f"{name}-model",
            tier="standard",
            input_price_per_mtok_usd=price_in,
            output_price_per_mtok_usd=price_out,
        )
    policy = RoutingPolicy.objects.create(name="chat-policy", is_default=True)
    for task_type in TASK_TYPES:
        rule = RoutingRule.objects.create(
            policy=policy, task_type=task_type, primary=models["alpha"], tiers=[]
        )
        RuleFallback.objects.create(rule=rule, model=models["beta"], position=1)
    return models


def chat_path(name: str) -> str:
    return f"/{name}/v1/chat/completions"
