"""The response cache on the request path: its key, the policy's rules, the callers' opt-out on
every door, the `x-cache` header and purges from the API and the admin; real Postgres, Redis,
the live web process and local upstream servers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from providers.adapters.types import Message
from providers.models import LLMModel, Provider
from routing.config import ConfigFileError, config_apply, config_export
from routing.models import RoutingPolicy
from routing.pipeline.events import Finished, GatewayRequest
from routing.services import chat_stream
from tests.chat.conftest import chat_registry
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "What is two plus two?"}]


def twin_providers(upstream: UpstreamServer) -> dict[str, LLMModel]:
    """`one:shared-model` and `two:shared-model`: one model name served by two providers at
    different prices, under a default policy that caches deterministic requests."""
    RoutingPolicy.objects.create(name="twins", is_default=True)
    models = {}
    for name, price_out in (("one", Decimal("10")), ("two", Decimal("20"))):
        provider = Provider.objects.create(
            name=name,
            kind="openai_compatible",
            base_url=f"{upstream.url}/{name}/v1",
            locality="cloud",
        )
        models[name] = LLMModel.objects.create(
            provider=provider,
            name="shared-model",
            tier="standard",
            input_price_per_mtok_usd=Decimal("1"),
            output_price_per_mtok_usd=price_out,
        )
    return models


def ask(model: str | None = None, **options: Any) -> GatewayRequest:
    return GatewayRequest(
        messages=(Message("user", "What is two plus two?"),),
        entry_point="native",
        task_type="general",
        model=model,
        **options,
    )


async def finished(request: GatewayRequest) -> Finished:
    events = [event async for event in chat_stream(request)]
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


# The key and the policy's rules, on the request path.


async def test_an_answer_cached_for_one_provider_is_not_served_for_another(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(twin_providers)(upstream)
    upstream.reply("POST", chat_path("one"), Reply.sse(openai_sse(["4 (one)"], usage=(10, 2))))
    upstream.reply("POST", chat_path("two"), Reply.sse(openai_sse(["4 (two)"], usage=(10, 2))))

    first = await finished(ask("one:shared-model", temperature=0.0))
    second = await finished(ask("two:shared-model", temperature=0.0))
    again = await finished(ask("one:shared-model", temperature=0.0))

    assert (first.text, first.cached, first.provider_name) == ("4 (one)", False, "one")
    assert (second.text, second.cached, second.provider_name) == ("4 (two)", False, "two")
    assert second.cost_usd == Decimal("0.00005")  # 10 in at $1, 2 out at $20 per million
    assert (again.text, again.cached, again.cost_usd) == ("4 (one)", True, Decimal(0))
    assert [r.path for r in upstream.requests] == [chat_path("one"), chat_path("two")]


async def test_a_sampled_request_is_neither_served_nor_kept_by_default(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(twin_providers)(upstream)
    upstream.reply("POST", chat_path("one"), Reply.sse(openai_sse(["4"])))

    answers = [await finished(ask("one:shared-model", temperature=t)) for t in (1.0, 1.0, None)]

    assert [a.cached for a in answers] == [False, False, False]
    assert len(upstream.requests) == 3
    assert answers[0].decision_trace["cache"] == {
        "result": "skipped",
        "reason": "not_deterministic",
    }


@pytest.mark.parametrize(
    ("mode", "temperature", "cached"),
    [("always", 1.0, True), ("off", 0.0, False), ("deterministic", 0.0, True)],
)
async def test_the_policy_decides_which_answers_are_cached(
    upstream: UpstreamServer, mode: str, temperature: float, cached: bool
) -> None:
    await database_sync_to_async(twin_providers)(upstream)
    await RoutingPolicy.objects.filter(name="twins").aupdate(response_cache=mode)
    upstream.reply("POST", chat_path("one"), Reply.sse(openai_sse(["4"])))

    await finished(ask("one:shared-model", temperature=temperature))
    second = await finished(ask("one:shared-model", temperature=temperature))

    assert second.cached is cached
    assert len(upstream.requests) == (1 if cached else 2)


async def test_the_log_row_names_the_key_of_the_answer_it_kept_and_served(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(twin_providers)(upstream)
    upstream.reply("POST", chat_path("one"), Reply.sse(openai_sse(["4"])))
    first, second = (
        ask("one:shared-model", temperature=0.0),
        ask("one:shared-model", temperature=0.0),
    )

    miss = await finished(first)
    hit = await finished(second)

    key = miss.decision_trace["cache"]["key"]
    assert miss.decision_trace["cache"] == {"result": "miss", "key": key, "stored": True}
    assert hit.decision_trace["cache"] == {"result": "hit", "key": key}
    rows = await database_sync_to_async(wait_rows)(2)
    assert [r.decision_trace["cache"]["key"] for r in rows] == [key, key]
    assert [r.cache_hit for r in rows] == [False, True]


# The doors: opt-out, `x-cache`, purges (the live web process).


def post_v1(url: str, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def answer(text: str = "4") -> Reply:
    return Reply.sse(openai_sse([text], usage=(10, 2)))


@pytest.mark.slow
def test_v1_says_miss_then_hit_in_x_cache_streamed_or_not(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), answer())
    key = new_key()
    body = {"model": "auto", "messages": QUESTION, "temperature": 0}

    miss = post_v1(live_server_url, key, body)
    hit = post_v1(live_server_url, key, body)
    streamed = post_v1(live_server_url, key, body | {"stream": True})

    assert (miss.status_code, miss.headers["x-cache"]) == (200, "miss")
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "hit")
    assert hit.json()["choices"][0]["message"]["content"] == "4"
    assert hit.json()["orchestrator"]["cost_usd"] == "0"
    assert (streamed.status_code, streamed.headers["x-cache"]) == (200, "hit")
    assert len(upstream.requests) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("headers", "extra"),
    [
        ({"Cache-Control": "no-cache"}, {}),
        ({"Cache-Control": "no-store"}, {}),
        ({}, {"cache": False}),
        # The report's case: sampled and asked not to be cached, it was served the cached answer.
        ({"Cache-Control": "no-cache"}, {"temperature": 1}),
    ],
)
def test_v1_callers_opt_out_by_header_or_body_field(
    live_server_url: str,
    upstream: UpstreamServer,
    headers: dict[str, str],
    extra: dict[str, Any],
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), answer("cached"), answer("fresh"))
    key = new_key()
    body = {"model": "auto", "messages": QUESTION, "temperature": 0}
    assert post_v1(live_server_url, key, body).headers["x-cache"] == "miss"

    opted_out = post_v1(live_server_url, key, body | extra, **headers)

    assert (opted_out.status_code, opted_out.headers["x-cache"]) == (200, "miss")
    assert opted_out.json()["choices"][0]["message"]["content"] == "fresh"
    assert opted_out.json()["orchestrator"]["decision"]["cache"]["result"] == "skipped"
    assert len(upstream.requests) == 2
    # Opted out, it kept nothing either: the first answer is still the cached one.
    assert post_v1(live_server_url, key, body).json()["choices"][0]["message"]["content"] == (
        "cached"
    )


@pytest.mark.slow
def test_v1_refuses_a_cache_field_that_is_not_a_boolean(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)

    refused = post_v1(
        live_server_url, new_key(), {"model": "auto", "messages": QUESTION, "cache": "no"}
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "cache"


def post_native(url: str, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/api/execute",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("headers", "extra"),
    [
        ({"Cache-Control": "no-cache"}, {}),
        ({}, {"cache": False}),
        ({}, {"metadata": {"cache": False}}),
    ],
)
def test_the_native_api_says_x_cache_and_lets_callers_opt_out(
    live_server_url: str,
    upstream: UpstreamServer,
    headers: dict[str, str],
    extra: dict[str, Any],
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), answer("cached"), answer("fresh"))
    key = new_key()
    body = {"prompt": "What is two plus two?", "temperature": 0, "task_type": "general"}

    miss = post_native(live_server_url, key, body)
    hit = post_native(live_server_url, key, body)
    opted_out = post_native(live_server_url, key, body | extra, **headers)

    assert [r.status_code for r in (miss, hit, opted_out)] == [200, 200, 200]
    assert [r.headers["x-cache"] for r in (miss, hit, opted_out)] == ["miss", "hit", "miss"]
    assert [r.json()["response"] for r in (miss, hit, opted_out)] == ["cached", "cached", "fresh"]
    assert len(upstream.requests) == 2


def staff_key() -> str:
    get_user_model().objects.create_user(username="operator", password="x", is_staff=True)
    return new_key(owner_username="operator")


def purge(url: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/api/cache/purge",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def fill_cache(url: str, key: str) -> dict[str, str]:
    """One cached answer from each of `alpha:alpha-model` and `beta:beta-model`; their keys."""
    keys = {}
    for model in ("alpha:alpha-model", "beta:beta-model"):
        body = {"model": model, "messages": QUESTION, "temperature": 0}
        response = post_v1(url, key, body)
        assert response.headers["x-cache"] == "miss"
        keys[model] = response.json()["orchestrator"]["decision"]["cache"]["key"]
    return keys


def still_cached(url: str, key: str) -> list[str]:
    """The models whose answer is still served from the cache (asking refills the others)."""
    hits = []
    for model in ("alpha:alpha-model", "beta:beta-model"):
        body = {"model": model, "messages": QUESTION, "temperature": 0}
        if post_v1(url, key, body).headers["x-cache"] == "hit":
            hits.append(model)
    return hits


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "left"),
    [
        ({"provider": "alpha"}, ["beta:beta-model"]),
        ({"model": "beta-model"}, ["alpha:alpha-model"]),
        ({"provider": "alpha", "model": "beta-model"}, ["alpha:alpha-model", "beta:beta-model"]),
        ({"key": "beta:beta-model"}, ["alpha:alpha-model"]),
    ],
)
def test_a_staff_caller_purges_by_provider_model_or_key(
    live_server_url: str, upstream: UpstreamServer, body: dict[str, str], left: list[str]
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), answer())
    upstream.reply("POST", chat_path("beta"), answer())
    key = staff_key()
    keys = fill_cache(live_server_url, key)
    if "key" in body:
        body = {"key": keys[body["key"]]}

    purged = purge(live_server_url, key, body)

    assert purged.status_code == 200
    assert purged.json() == {"purged": 2 - len(left)}
    assert still_cached(live_server_url, key) == left


@pytest.mark.slow
def test_a_purge_is_refused_to_others_and_without_a_filter(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), answer())
    upstream.reply("POST", chat_path("beta"), answer())
    caller, staff = new_key(), staff_key()
    fill_cache(live_server_url, caller)

    refused = purge(live_server_url, caller, {"provider": "alpha"})
    empty = purge(live_server_url, staff, {})
    bad_key = purge(live_server_url, staff, {"key": "not-a-key"})

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "INVALID_REQUEST"
    assert bad_key.status_code == 400
    assert still_cached(live_server_url, caller) == ["alpha:alpha-model", "beta:beta-model"]


@pytest.mark.slow
@pytest.mark.parametrize("admin_page", ["provider", "llmmodel", "requestlog"])
def test_the_admin_purges_by_provider_model_or_request(
    live_server_url: str, upstream: UpstreamServer, admin_client: Client, admin_page: str
) -> None:
    models = gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), answer())
    upstream.reply("POST", chat_path("beta"), answer())
    key = new_key()
    fill_cache(live_server_url, key)
    alpha = models["alpha"]
    selected = {
        "provider": ("providers", alpha.provider_id),
        "llmmodel": ("providers", alpha.pk),
        "requestlog": (
            "analytics",
            wait_rows(1, model_name="alpha-model")[0].pk,
        ),
    }[admin_page]

    response = admin_client.post(
        f"/admin/{selected[0]}/{admin_page}/",
        {"action": "purge_cached_answers", "_selected_action": [str(selected[1])]},
        follow=True,
    )

    assert response.status_code == 200
    assert "1 cached answers purged." in response.content.decode()
    assert still_cached(live_server_url, key) == ["beta:beta-model"]


# The policy's rule in configuration files.

POLICY_FILE = """\
version: 1
policies:
  - name: cached
    default: true
    response_cache: always
"""


def test_config_files_import_and_export_the_policys_response_cache() -> None:
    config_apply(text=POLICY_FILE)

    assert RoutingPolicy.objects.get(name="cached").response_cache == "always"
    assert "\n  response_cache: always\n" in config_export(include_providers=False)
    assert config_apply(text=POLICY_FILE).unchanged == ["policy cached"]
    with pytest.raises(ConfigFileError) as refused:
        config_apply(text=POLICY_FILE.replace("always", "sometimes"))
    assert refused.value.errors == [
        "line 5: policy 'cached' response_cache: 'sometimes' is not one of "
        "deterministic, always, off"
    ]


# The chat door (the websocket).


async def chat_started(socket: Any, **extra: Any) -> dict[str, Any]:
    """The `chat.started` frame of a new conversation's answer to the question."""
    await socket.send_json_to(
        {"type": "chat.request", "conversation_id": None, "content": "What is 2+2?", **extra}
    )
    started = None
    while True:
        frame = await socket.receive_json_from(timeout=15)
        if frame["type"] == "chat.started":
            started = frame
        if frame["type"] in ("chat.done", "chat.error"):
            assert frame["type"] == "chat.done", frame
            assert started is not None
            return started


async def test_the_chat_door_opts_out_with_cache_false(upstream: UpstreamServer) -> None:
    from tests.chat.test_consumer import connect

    await database_sync_to_async(chat_registry)(upstream)
    # The chat sends no temperature: only a policy that caches every request caches it.
    await RoutingPolicy.objects.filter(name="chat-policy").aupdate(response_cache="always")
    upstream.reply("POST", chat_path("alpha"), answer())
    _, socket = await connect("chatter")
    try:
        first = await chat_started(socket)
        again = await chat_started(socket)
        opted_out = await chat_started(socket, cache=False)
        refused = await socket.send_json_to(
            {"type": "chat.request", "conversation_id": None, "content": "x", "cache": "no"}
        )
        error = await socket.receive_json_from(timeout=15)
    finally:
        await socket.disconnect()

    assert [first["cached"], again["cached"], opted_out["cached"]] == [False, True, False]
    assert opted_out["decision_trace"]["cache"] == {"result": "skipped", "reason": "opted_out"}
    assert len(upstream.requests) == 2
    assert refused is None
    assert (error["type"], error["message"]) == ("error", "cache must be a boolean")
