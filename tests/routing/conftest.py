from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.cache import cache

from providers.models import LLMModel, Provider
from routing import sampling
from routing.config import cache as config_cache
from routing.models import RoutingPolicy, RoutingRule, StateRule
from routing.router import store
from tests.routing.router_artifacts import write_artifact


@pytest.fixture(autouse=True)
def _fresh_routing_cache(settings) -> Iterator[None]:
    settings.ORCHESTRATOR_AGENT_SAMPLING = "off"
    cache.delete_many([config_cache.VERSION_KEY, sampling.SNAPSHOT_KEY])
    config_cache._memo = None
    config_cache.shared_forget()
    yield
    cache.delete_many([config_cache.VERSION_KEY, sampling.SNAPSHOT_KEY])
    config_cache._memo = None
    config_cache.shared_forget()


@pytest.fixture
def tiny_router(settings, tmp_path) -> Iterator[str]:
    """The active router is the hand-made one of tests/routing/router_artifacts.py."""
    settings.ORCHESTRATOR_ROUTER_ARTIFACT = str(write_artifact(tmp_path / "tiny.json"))
    store.router_forget()
    yield settings.ORCHESTRATOR_ROUTER_ARTIFACT
    store.router_forget()


@pytest.fixture
def registry_rows(db) -> dict[str, LLMModel]:
    local = Provider.objects.create(
        name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", locality="local"
    )
    openai = Provider.objects.create(
        name="openai", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    tiny = LLMModel.objects.create(
        provider=local,
        name="tiny",
        tier="small_local",
        context_window=2048,
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    mini = LLMModel.objects.create(
        provider=openai,
        name="mini",
        tier="standard",
        context_window=128000,
        input_price_per_mtok_usd=Decimal("0.15"),
        output_price_per_mtok_usd=Decimal("0.60"),
    )
    big = LLMModel.objects.create(
        provider=openai,
        name="big",
        tier="premium",
        context_window=128000,
        input_price_per_mtok_usd=Decimal("2.50"),
        output_price_per_mtok_usd=Decimal("10.00"),
        task_strengths=["code"],
    )
    policy = RoutingPolicy.objects.create(name="balanced", is_default=True)
    RoutingRule.objects.create(policy=policy, task_type="code", primary=big)
    StateRule.objects.create(
        policy=policy, agent="connectivity", state="DISCONNECTED", action="local_only"
    )
    return {"tiny": tiny, "mini": mini, "big": big}
