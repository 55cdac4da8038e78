from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from providers.models import LLMModel
from routing.config import cache as config_cache

# The shared local upstream server, the bundled model and the per-test HTTP client reset.
from tests.providers.conftest import (  # noqa: F401
    _close_http_client,
    local_model_url,
    upstream,
    upstream_server,
)
from tests.providers.upstream_server import UpstreamServer
from tests.routing.gateway_support import every_task_to, upstream_models


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
    models = upstream_models(server)
    every_task_to("chat-policy", models["alpha"], models["beta"])
    return models


def chat_path(name: str) -> str:
    return f"/{name}/v1/chat/completions"
