"""Privacy routing through the live web process and the request path: a prompt the privacy agent
flags, a local-only request (body or header) or a local-only key stays on local models, or is
refused with PRIVACY_NO_LOCAL_MODEL in each door's shape; its text is never logged, its answer
never cached."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from analytics.models import RequestLog, RequestPayload
from providers.adapters.types import Message
from providers.models import LLMModel, Provider
from routing.pipeline.events import Failed, Finished, GatewayRequest
from routing.request_metadata import RequestMetadata
from routing.services import chat_stream
from tests.gateway.test_api_errors import chat, execute, native_error, openai_error
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    gateway_registry,
    new_key,
    settle_config,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_PROMPT = "Reply to jane.doe@acme-corp.com about the invoice"
PLAIN_PROMPT = "Write a haiku about autumn leaves"


def local_model(upstream: UpstreamServer) -> LLMModel:
    provider = Provider.objects.create(
        name="home", kind="openai_compatible", base_url=f"{upstream.url}/home/v1", locality="local"
    )
    return LLMModel.objects.create(
        provider=provider,
        name="tiny",
        tier="small_local",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )


def with_local(upstream: UpstreamServer) -> None:
    gateway_registry(upstream)  # every task to the cloud models alpha, then beta
    local_model(upstream)
    settle_config()
    for name in ("alpha", "beta", "home"):
        upstream.reply("POST", chat_path(name), Reply.sse(openai_sse([f"from {name}"])))


def answered_by(upstream: UpstreamServer) -> list[str]:
    return [r.path.split("/")[1] for r in upstream.requests]


def test_native_flagged_prompt_goes_to_the_local_model_and_says_why(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    with_local(upstream)
    key = new_key()

    answer = execute(live_server_url, key, {"prompt": SECRET_PROMPT})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_id"], body["response"]) == ("home:tiny", "from home")
    assert body["routing"]["privacy"] == {
        "triggered": ["email"],
        "local_only": [],
        "action": "local_only",
    }
    assert answered_by(upstream) == ["home"]
    (row,) = wait_rows(1, entry_point="native")
    assert row.locality == "local"
    assert row.decision_trace["privacy"]["triggered"] == ["email"]
    assert row.decision_trace["cache"] == {"result": "skipped", "reason": "privacy"}
    assert "jane.doe" not in str(row.decision_trace)
    # A plain prompt still goes where the policy sends it.
    plain = execute(live_server_url, key, {"prompt": PLAIN_PROMPT})
    assert plain.json()["model_id"] == "alpha:alpha-model"
    assert "privacy" not in plain.json()["routing"]


def test_native_metadata_and_the_header_ask_for_local_only(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    with_local(upstream)
    key = new_key()

    by_body = execute(
        live_server_url, key, {"prompt": PLAIN_PROMPT, "metadata": {"local_only": True}}
    )
    by_header = execute(
        live_server_url, key, {"prompt": PLAIN_PROMPT}, **{"x-orchestrator-local-only": "true"}
    )
    bad = execute(live_server_url, key, {"prompt": PLAIN_PROMPT, "metadata": {"local_only": 3}})

    for answer in (by_body, by_header):
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_id"] == "home:tiny"
        assert answer.json()["routing"]["privacy"]["local_only"] == ["request"]
    assert bad.status_code == 400
    error = native_error(bad)
    assert (error["code"], error["details"]["field"]) == ("INVALID_REQUEST", "metadata.local_only")


def test_v1_extension_header_and_key_keep_it_local(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    with_local(upstream)
    messages = [{"role": "user", "content": PLAIN_PROMPT}]

    by_metadata = chat(
        live_server_url,
        new_key(),
        {"model": "auto", "messages": messages, "metadata": {"local_only": "true"}},
    )
    by_header = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        json={"model": "auto", "messages": messages},
        headers={"Authorization": f"Bearer {new_key()}", "x-orchestrator-local-only": "true"},
        timeout=30,
    )
    by_key = chat(
        live_server_url, new_key(local_only=True), {"model": "auto", "messages": messages}
    )

    for answer, who in ((by_metadata, "request"), (by_header, "request"), (by_key, "api_key")):
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "home:tiny"
        assert answer.json()["orchestrator"]["decision"]["privacy"]["local_only"] == [who]


def test_without_a_local_model_each_door_refuses_with_its_shape(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)  # cloud models only
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["from alpha"])))
    key = new_key()

    native = execute(live_server_url, key, {"prompt": "my key is AKIAIOSFODNN7EXAMPLE"})
    v1 = chat(
        live_server_url,
        key,
        {"model": "auto", "messages": [{"role": "user", "content": SECRET_PROMPT}]},
    )
    anthropic = httpx.post(
        f"{live_server_url}/v1/messages",
        json={
            "model": "auto",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": PLAIN_PROMPT}],
        },
        headers={"x-api-key": key, "x-orchestrator-local-only": "true"},
        timeout=30,
    )
    local_only = {"x-orchestrator-local-only": "true", "Authorization": f"Bearer {key}"}
    gemini = httpx.post(
        f"{live_server_url}/v1beta/models/auto:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": PLAIN_PROMPT}]}]},
        headers=local_only | {"x-goog-api-key": key},
        timeout=30,
    )
    ollama = httpx.post(
        f"{live_server_url}/api/chat",
        json={"model": "auto", "stream": False, "messages": [{"role": "user", "content": "hi"}]},
        headers=local_only,
        timeout=30,
    )
    named_cloud = execute(
        live_server_url,
        key,
        {"prompt": PLAIN_PROMPT, "model_id": "alpha:alpha-model", "metadata": {"local_only": True}},
    )

    assert native.status_code == 400
    error = native_error(native)
    assert error["code"] == "PRIVACY_NO_LOCAL_MODEL"
    assert error["details"] == {
        "triggered": ["secret"],
        "local_only": [],
        "request_id": error["trace_id"],
    }
    assert "AKIA" not in error["message"]
    assert v1.status_code == 400
    assert openai_error(v1)["code"] == "PRIVACY_NO_LOCAL_MODEL"
    assert "jane.doe" not in v1.text
    assert anthropic.status_code == 400
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert "local models" in anthropic.json()["error"]["message"]
    assert gemini.status_code == 400, gemini.text
    assert gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert ollama.status_code == 400, ollama.text
    assert "local models" in ollama.json()["error"]
    assert named_cloud.status_code == 400
    assert native_error(named_cloud)["code"] == "PRIVACY_NO_LOCAL_MODEL"
    assert upstream.requests == []  # nothing reached a cloud model
    rows = wait_rows(6)
    assert {r.error_code for r in rows} == {"PRIVACY_NO_LOCAL_MODEL"}
    assert rows[0].decision_trace["outcome"] == "privacy: no local model"


def ask(text: str, **kwargs: Any) -> GatewayRequest:
    return GatewayRequest(
        messages=(Message("user", text),), entry_point="native", task_type="general", **kwargs
    )


async def collect(request: GatewayRequest) -> list[Any]:
    return [event async for event in chat_stream(request)]


@override_settings(ORCHESTRATOR_STORE_PAYLOADS=True)
async def test_a_private_request_keeps_its_text_off_the_log(upstream: UpstreamServer) -> None:
    await database_sync_to_async(with_local)(upstream)
    flagged = ask("card 4111 1111 1111 1111, is it blocked?", temperature=0)
    flagged_again = ask("card 4111 1111 1111 1111, is it blocked?", temperature=0)
    marked = ask(PLAIN_PROMPT, metadata=RequestMetadata(local_only=True))
    plain = ask(PLAIN_PROMPT)

    for request in (flagged, flagged_again, marked, plain):
        events = await collect(request)
        assert isinstance(events[-1], Finished), events[-1]

    rows = {
        row.request_id: row
        async for row in RequestLog.objects.filter(
            request_id__in=[r.request_id for r in (flagged, flagged_again, marked, plain)]
        )
    }
    assert rows[flagged.request_id].model_name == "tiny"
    # The same deterministic request is answered again, not from the response cache.
    assert rows[flagged_again.request_id].cache_hit is False
    assert len([r for r in upstream.requests if r.path == chat_path("home")]) == 3
    payloads = {p.request_id async for p in RequestPayload.objects.all()}
    assert payloads == {rows[plain.request_id].pk}


async def test_a_refusal_is_one_failed_event_with_the_detectors(upstream: UpstreamServer) -> None:
    await database_sync_to_async(gateway_registry)(upstream)
    events = await collect(ask("ssh key -----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl"))
    (failed,) = events
    assert isinstance(failed, Failed)
    assert (failed.code, failed.http_status) == ("PRIVACY_NO_LOCAL_MODEL", 400)
    assert failed.details == {"triggered": ["private_key"], "local_only": []}
