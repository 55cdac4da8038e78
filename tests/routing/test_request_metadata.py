"""Request metadata (end user, project, tags) on every door, against the web process as deployed:
kept on the log row, refused with each door's error shape naming the field, and carried by the
journal so a recovered row keeps it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from analytics.models import RequestLog
from routing.pipeline import journal
from routing.pipeline.events import GatewayRequest, Message
from routing.pipeline.journal import INDEX_KEY, journal_open
from routing.request_metadata import FieldInvalid, RequestMetadata, metadata_read
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

HELLO = [{"role": "user", "content": "Say hello"}]
META_HEADERS = {"x-orchestrator-project": "search", "x-orchestrator-tags": "beta, eu"}


def stored(row: RequestLog) -> tuple[str, str, list[str]]:
    return row.end_user, row.project, sorted(row.tags.values_list("tag", flat=True))


def post(url: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers, timeout=30)


@pytest.fixture
def key(upstream: UpstreamServer, transactional_db: None) -> str:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"], usage=(10, 2))))
    return new_key()


# --- validation (pure) ----------------------------------------------------------------------


def test_body_values_win_and_headers_fill_the_rest() -> None:
    found = metadata_read(
        body={"project_id": " p ", "tags": ["a", "b", "a"], "note": 1},
        headers={"x-orchestrator-user": "u-9", "x-orchestrator-project": "ignored"},
    )
    assert found == RequestMetadata(end_user="u-9", project="p", tags=("a", "b"))


@pytest.mark.parametrize(
    ("body", "headers", "field", "message"),
    [
        ({"tags": ["a" * 65]}, None, "metadata.tags[0]", "at most 64 characters"),
        ({"tags": [f"t{i}" for i in range(17)]}, None, "metadata.tags", "at most 16 tags"),
        ({"project_id": "a\nb"}, None, "metadata.project_id", "control characters"),
        ({"user_id": 7}, None, "metadata.user_id", "must be a string"),
        ({"tags": ["a,b"]}, None, "metadata.tags[0]", "comma"),
        (None, {"x-orchestrator-tags": "a,,b"}, "x-orchestrator-tags", "must not be empty"),
        (None, {"x-orchestrator-user": "u" * 129}, "x-orchestrator-user", "128 characters"),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    body: Any, headers: dict[str, str] | None, field: str, message: str
) -> None:
    with pytest.raises(FieldInvalid) as caught:
        metadata_read(body=body, headers=headers)
    assert caught.value.field == field
    assert message in caught.value.message


# --- the doors --------------------------------------------------------------------------------


@pytest.mark.slow
def test_native_execute_keeps_its_metadata_object(live_server_url: str, key: str) -> None:
    body = {"prompt": "hi", "metadata": {"user_id": "u-1", "project_id": "search", "tags": ["a"]}}
    answer = post(f"{live_server_url}/api/execute", body, authorization=f"Bearer {key}")
    assert answer.status_code == 200, answer.text
    (row,) = wait_rows(1)
    assert stored(row) == ("u-1", "search", ["a"])

    refused = post(
        f"{live_server_url}/api/execute",
        {"prompt": "hi", "metadata": {"tags": ["x\x07"]}},
        authorization=f"Bearer {key}",
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["field"] == "metadata.tags[0]"


@pytest.mark.slow
def test_openai_metadata_map_user_and_headers(live_server_url: str, key: str) -> None:
    url = f"{live_server_url}/v1/chat/completions"
    auth = {"authorization": f"Bearer {key}"}
    body = {"model": "auto", "messages": HELLO, "user": "end-7"}
    answer = post(url, {**body, "metadata": {"tags": "x,y", "other": "kept"}}, **auth)
    assert answer.status_code == 200, answer.text
    assert stored(wait_rows(1)[0]) == ("end-7", "", ["x", "y"])

    assert post(url, body, **auth, **META_HEADERS).status_code == 200
    assert stored(wait_rows(2)[1]) == ("end-7", "search", ["beta", "eu"])

    refused = post(url, {**body, "metadata": {"project_id": "p" * 65}}, **auth)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "metadata.project_id"


@pytest.mark.slow
def test_anthropic_metadata_user_id_and_headers(live_server_url: str, key: str) -> None:
    url = f"{live_server_url}/v1/messages"
    body = {"model": "auto", "max_tokens": 20, "messages": HELLO, "metadata": {"user_id": "u-a"}}
    answer = post(url, body, **{"x-api-key": key}, **META_HEADERS)
    assert answer.status_code == 200, answer.text
    assert stored(wait_rows(1)[0]) == ("u-a", "search", ["beta", "eu"])

    refused = post(url, body, **{"x-api-key": key, "x-orchestrator-project": "a\tb"})
    assert refused.status_code == 400
    assert refused.json()["type"] == "error"
    assert "x-orchestrator-project" in refused.json()["error"]["message"]


@pytest.mark.slow
def test_ollama_and_gemini_take_the_headers(live_server_url: str, key: str) -> None:
    ollama_body = {"model": "auto", "messages": HELLO, "stream": False}
    answer = post(
        f"{live_server_url}/api/chat",
        ollama_body,
        authorization=f"Bearer {key}",
        **{"x-orchestrator-user": "o-1"},
        **META_HEADERS,
    )
    assert answer.status_code == 200, answer.text
    assert stored(wait_rows(1)[0]) == ("o-1", "search", ["beta", "eu"])

    gemini_body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    gemini = f"{live_server_url}/v1beta/models/auto:generateContent"
    answer = post(gemini, gemini_body, **{"x-goog-api-key": key, "x-orchestrator-tags": "g"})
    assert answer.status_code == 200, answer.text
    assert stored(wait_rows(2)[1]) == ("", "", ["g"])

    refused = post(
        f"{live_server_url}/api/chat",
        ollama_body,
        authorization=f"Bearer {key}",
        **{"x-orchestrator-tags": ",".join(f"t{i}" for i in range(17))},
    )
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("x-orchestrator-tags ")
    refused = post(gemini, gemini_body, **{"x-goog-api-key": key, "x-orchestrator-user": "u" * 129})
    assert refused.status_code == 400
    assert "x-orchestrator-user" in refused.json()["error"]["message"]


# --- the journal ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_recovered_row_keeps_the_metadata() -> None:
    redis = journal._client()
    assert redis is not None
    redis.delete(INDEX_KEY)
    request = GatewayRequest(
        messages=(Message(role="user", content="hi"),),
        entry_point="openai",
        metadata=RequestMetadata(end_user="u-j", project="proj", tags=("t1", "t2")),
    )
    await sync_to_async(journal_open)(request=request)

    written = await sync_to_async(journal.journal_sweep)(now=time.time() + journal.grace_s() + 1)

    assert written == 1
    row = await RequestLog.objects.aget(request_id=request.request_id)
    assert await sync_to_async(stored)(row) == ("u-j", "proj", ["t1", "t2"])
    redis.delete(INDEX_KEY)
