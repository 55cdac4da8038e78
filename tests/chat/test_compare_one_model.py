"""Comparing with one enabled model: the model at two temperatures, or two policies."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat.models import Message
from providers.models import LLMModel, Provider
from routing.engine.taxonomy import TASK_TYPES
from routing.models import RoutingPolicy, RoutingRule
from tests.chat.conftest import chat_path
from tests.chat.test_consumer import TIMEOUT_S, ask, connect
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)


def _one_model(server: UpstreamServer) -> LLMModel:
    provider = Provider.objects.create(
        name="alpha", kind="openai_compatible", base_url=f"{server.url}/alpha/v1"
    )
    model = LLMModel.objects.create(
        provider=provider,
        name="alpha-model",
        tier="standard",
        input_price_per_mtok_usd=Decimal("1"),
        output_price_per_mtok_usd=Decimal("2"),
    )
    for name, default in (("balanced", True), ("thrifty", False)):
        policy = RoutingPolicy.objects.create(name=name, is_default=default)
        for task_type in TASK_TYPES:
            RoutingRule.objects.create(policy=policy, task_type=task_type, primary=model, tiers=[])
    return model


async def _until_done(socket: WebsocketCommunicator, answers: int) -> list[dict[str, Any]]:
    frames = [await socket.receive_json_from(timeout=TIMEOUT_S)]
    while sum(f["type"] in ("chat.done", "chat.error") for f in frames) < answers:
        frames.append(await socket.receive_json_from(timeout=TIMEOUT_S))
    return frames


async def test_one_model_is_compared_with_itself_at_two_temperatures(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(_one_model)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"], usage=(10, 2))))
    _, socket = await connect("ana")

    compare = [
        {"model": "alpha:alpha-model", "temperature": 0.2},
        {"model": "alpha:alpha-model", "temperature": 1.5},
    ]
    await socket.send_json_to(ask("Say hi", compare=compare))
    frames = await _until_done(socket, 2)

    accepted = frames[0]
    assert [(r["model"], r["temperature"]) for r in accepted["requests"]] == [
        ("alpha:alpha-model", 0.2),
        ("alpha:alpha-model", 1.5),
    ]
    sent = sorted(r.json()["temperature"] for r in upstream.requests)
    assert sent == [0.2, 1.5]
    done = {f["request_id"]: f for f in frames if f["type"] == "chat.done"}
    assert [done[r["request_id"]]["badge"]["temperature"] for r in accepted["requests"]] == [
        0.2,
        1.5,
    ]
    saved = [m async for m in Message.objects.filter(role="assistant").order_by("id")]
    assert {str(m.compare_group) for m in saved} == {accepted["compare_group"]}
    assert sorted(m.badge["temperature"] for m in saved) == [0.2, 1.5]
    await socket.disconnect()


async def test_one_model_is_compared_under_two_policies(upstream: UpstreamServer) -> None:
    await database_sync_to_async(_one_model)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"], usage=(10, 2))))
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Say hi", compare=["balanced", "thrifty"]))
    frames = await _until_done(socket, 2)

    assert [r["model"] for r in frames[0]["requests"]] == ["balanced", "thrifty"]
    started = sorted(f["decision_trace"]["policy"] for f in frames if f["type"] == "chat.started")
    assert started == ["balanced", "thrifty"]
    assert [f["badge"]["model_ref"] for f in frames if f["type"] == "chat.done"] == [
        "alpha:alpha-model",
        "alpha:alpha-model",
    ]
    await socket.disconnect()


async def test_compared_temperatures_are_checked() -> None:
    _, socket = await connect("ana")
    cases = [
        ([{"model": "a:x", "temperature": 0.5}, {"model": "a:x", "temperature": 0.5}],
         "compare takes 2 to 3 different models"),
        ([{"model": "a:x", "temperature": 3}, {"model": "a:x", "temperature": 1}],
         "a compared temperature is a number from 0.0 to 2.0"),
        ([{"model": "a:x", "temperature": True}, {"model": "a:x"}],
         "a compared temperature is a number from 0.0 to 2.0"),
        ([{"temperature": 1}, "a:x"],
         'compare must be a list of models ("provider:model" or a policy name) or of '
         '{"model": ..., "temperature": ...} objects'),
    ]  # fmt: skip
    for compare, message in cases:
        await socket.send_json_to(ask("hi", compare=compare))
        assert await socket.receive_json_from(timeout=TIMEOUT_S) == {
            "type": "error",
            "code": "INVALID_REQUEST",
            "message": message,
        }
    await socket.disconnect()
