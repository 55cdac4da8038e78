"""A routed request's row carries the router's probability and the quality its answer lost."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from analytics.models import RequestLog
from routing.models import RoutingPolicy
from routing.pipeline.events import Finished
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import baseline_model, upstream_models
from tests.routing.streams import openai_sse
from tests.routing.test_chat_stream import ask, collect, log_row, path

pytestmark = pytest.mark.django_db(transaction=True)


def two_rungs(upstream: UpstreamServer, *, threshold: float) -> None:
    """Standard models below the threshold, the premium one at or above it."""
    upstream_models(upstream)
    baseline_model(upstream, enabled=True)
    RoutingPolicy.objects.create(
        name="two-rungs",
        is_default=True,
        router={"ladder": ["standard", "premium"], "threshold": threshold},
    )


def answer_everywhere(upstream: UpstreamServer) -> None:
    for name in ("alpha", "beta", "premium"):
        upstream.reply("POST", path(name), Reply.sse(openai_sse(["ok"], usage=(10, 2))))


@pytest.mark.parametrize(
    ("threshold", "tier", "lost"),
    [(1.0, "standard", "probability"), (0.0, "premium", "nothing")],
)
async def test_routed_row_keeps_probability_and_loss_of_the_tier_that_answered(
    upstream: UpstreamServer, threshold: float, tier: str, lost: str
) -> None:
    await database_sync_to_async(two_rungs)(upstream, threshold=threshold)
    answer_everywhere(upstream)
    request = ask("Prove that there are infinitely many primes.", task_type=None)

    events = await collect(request)

    assert isinstance(events[-1], Finished)
    row: RequestLog = await log_row(request)
    router = row.decision_trace["router"]
    assert router["tier"] == tier
    assert row.premium_probability == router["probability"]
    assert row.quality_loss == (router["probability"] if lost == "probability" else 0.0)
