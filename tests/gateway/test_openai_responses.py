"""`POST /v1/responses` and `GET /v1/responses/{id}` through the official openai SDK against the
live ASGI server: text answers routed through the chat path, costed and logged, streamed as the
Responses API's typed events, stored per API key and continued by `previous_response_id`."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from analytics.models import RequestLog, StoredResponse
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def test_whole_answer_is_a_response_costed_logged_and_stored(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Hello", "!"], usage=(1000, 200)))
    )
    key = new_key()

    raw = client(live_server_url, key).responses.with_raw_response.create(
        model="auto", input="Say hello", max_output_tokens=20, temperature=0.5
    )
    response = raw.parse()

    assert response.output_text == "Hello!"
    assert response.object == "response"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.model == "alpha:alpha-model"
    assert response.max_output_tokens == 20
    assert response.temperature == 0.5
    assert response.to_dict()["store"] is True
    (item,) = response.output
    assert item.type == "message"
    assert (item.role, item.status) == ("assistant", "completed")
    assert [(c.type, c.text) for c in item.content] == [("output_text", "Hello!")]  # type: ignore[union-attr]
    assert response.usage is not None
    assert (
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.total_tokens,
        response.usage.input_tokens_details.cached_tokens,
        response.usage.output_tokens_details.reasoning_tokens,
    ) == (1000, 200, 1200, 0, 0)
    (sent,) = upstream.requests
    assert sent.json()["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent.json()["max_tokens"] == 20
    (row,) = wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])
    assert row.entry_point == "responses"
    assert row.status == RequestLog.Status.SUCCESS
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    assert row.cost_usd == Decimal("0.00325000")
    stored = StoredResponse.objects.get(id=response.id)
    assert stored.messages == [{"role": "user", "content": "Say hello"}]
    assert stored.output_text == "Hello!"


def test_previous_response_id_continues_the_conversation_without_its_instructions(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hello!"], usage=(10, 2))),
        Reply.sse(openai_sse(["Fine."], usage=(20, 2))),
    )
    key = new_key()
    sdk = client(live_server_url, key)

    first = sdk.responses.create(
        model="auto",
        instructions="Be brief.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
    )
    second = sdk.responses.create(
        model="auto",
        instructions="Answer in English.",
        previous_response_id=first.id,
        input=[{"type": "message", "role": "user", "content": "How are you?"}],
    )

    assert (first.output_text, second.output_text) == ("Hello!", "Fine.")
    assert second.previous_response_id == first.id
    assert second.instructions == "Answer in English."
    assert [r.json()["messages"] for r in upstream.requests] == [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        [
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "Say hello"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
    ]
    retrieved = sdk.responses.retrieve(second.id)
    assert retrieved.id == second.id
    assert retrieved.output_text == "Fine."
    assert retrieved.previous_response_id == first.id


def test_another_key_can_neither_read_nor_continue_a_response(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hello!"])))
    owner = client(live_server_url, new_key())
    other = client(live_server_url, new_key())
    first = owner.responses.create(model="auto", input="Say hello")

    with pytest.raises(openai.NotFoundError) as read:
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as continued:
        other.responses.create(model="auto", input="And?", previous_response_id=first.id)

    assert read.value.body["type"] == "not_found_error"  # type: ignore[index]
    assert continued.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert continued.value.body["message"] == (  # type: ignore[index]
        f"Response with id {first.id!r} not found."
    )
    assert len(upstream.requests) == 1
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(first.id)
    assert owner.responses.retrieve(first.id).id == first.id


def test_a_deleted_response_is_gone(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hello!"])))
    sdk = client(live_server_url, new_key())
    first = sdk.responses.create(model="auto", input="Say hello")

    sdk.responses.delete(first.id)

    assert not StoredResponse.objects.filter(id=first.id).exists()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="auto", input="And?", previous_response_id=first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(first.id)


def test_store_false_keeps_nothing(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hello!"])))
    sdk = client(live_server_url, new_key())

    response = sdk.responses.create(model="auto", input="Say hello", store=False)

    assert response.to_dict()["store"] is False
    assert not StoredResponse.objects.filter(id=response.id).exists()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_streamed_events_in_openais_order(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["a", "b", "c"], usage=(7, 3))))
    sdk = client(live_server_url, new_key())

    events = list(sdk.responses.create(model="auto", input="abc", stream=True))

    types = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    # The upstream's pieces may arrive together: how many deltas is not fixed.
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(d.delta for d in deltas) == "abc"
    assert {(d.output_index, d.content_index, d.item_id) for d in deltas} == {
        (0, 0, events[2].item.id)  # type: ignore[union-attr]
    }
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == "abc"
    assert completed.usage is not None
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (7, 3)
    (row,) = wait_rows(1, entry_point="responses")
    assert (row.input_tokens, row.output_tokens) == (7, 3)
    assert sdk.responses.retrieve(completed.id).output_text == "abc"


def test_fields_that_would_change_the_answer_are_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    sdk = client(live_server_url, new_key())

    with pytest.raises(openai.BadRequestError) as tools:
        sdk.responses.create(
            model="auto",
            input="hi",
            tools=[{"type": "web_search"}],
        )
    with pytest.raises(openai.BadRequestError) as reasoning:
        sdk.responses.create(model="auto", input="hi", reasoning={"effort": "high"})
    picture: Any = [
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
    ]
    with pytest.raises(openai.BadRequestError) as image:
        sdk.responses.create(model="auto", input=picture)
    with pytest.raises(openai.BadRequestError) as unknown:
        sdk.responses.create(model="auto", input="hi", extra_body={"colour": "red"})
    xml: Any = {"format": {"type": "xml"}}
    with pytest.raises(openai.BadRequestError) as schema:
        sdk.responses.create(model="auto", input="hi", text=xml)

    with pytest.raises(openai.BadRequestError) as nul:
        sdk.responses.create(model="auto", instructions="Be brief.", input="a\u0000b")
    with pytest.raises(openai.BadRequestError) as too_many:
        sdk.responses.create(model="auto", input="hi", max_output_tokens=0)

    assert nul.value.body["param"] == "input"  # type: ignore[index]
    assert too_many.value.body["param"] == "max_output_tokens"  # type: ignore[index]
    assert too_many.value.body["message"].startswith(  # type: ignore[index]
        "max_output_tokens: must be an integer from 1 to "
    )
    assert tools.value.body["param"] == "tools[0].type"  # type: ignore[index]
    assert tools.value.body["message"] == (  # type: ignore[index]
        "tools[0].type: 'web_search' tools are not supported by this gateway: only function "
        "tools (OpenAI's built-in tools run only at OpenAI)"
    )
    assert reasoning.value.body["param"] == "reasoning"  # type: ignore[index]
    assert image.value.body["param"] == "input[0].content[0]"  # type: ignore[index]
    assert unknown.value.body["message"] == "colour: unknown field"  # type: ignore[index]
    assert schema.value.body["param"] == "text.format.type"  # type: ignore[index]
    assert upstream.requests == []
    rows = wait_rows(7, entry_point="responses")
    assert {r.status for r in rows} == {RequestLog.Status.INVALID}


def test_a_failure_after_the_first_text_ends_the_stream_with_response_failed(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    # Two pieces, then the connection is reset: the answer cannot fall back any more.
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo", "!"], usage=(3, 3))).but(reset_after_chunks=2),
    )
    sdk = client(live_server_url, new_key())

    events = list(sdk.responses.create(model="auto", input="Say hello", stream=True))

    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed"
    assert failed.error is not None
    assert "response.completed" not in [e.type for e in events]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hel"
    (row,) = wait_rows(1, entry_point="responses")
    assert row.status == "partial"
    assert not StoredResponse.objects.exists()


def test_an_answer_cut_by_max_output_tokens_is_incomplete(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    cut = openai_sse(["Once upon"], usage=(5, 2)).replace(
        b'"finish_reason": "stop"', b'"finish_reason": "length"'
    )
    upstream.reply("POST", chat_path("alpha"), Reply.sse(cut))
    sdk = client(live_server_url, new_key())

    response = sdk.responses.create(model="auto", input="Tell a story", max_output_tokens=2)

    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Once upon"


@pytest.mark.parametrize("odd", ["%00", "%ff%fe", "a" * 300, "resp_%0a"])
def test_an_odd_response_id_is_not_found(live_server_url: str, odd: str) -> None:
    key = new_key()
    headers = {"Authorization": f"Bearer {key}"}

    read = httpx.get(f"{live_server_url}/v1/responses/{odd}", headers=headers)
    gone = httpx.delete(f"{live_server_url}/v1/responses/{odd}", headers=headers)
    continued = httpx.post(
        f"{live_server_url}/v1/responses",
        headers=headers,
        json={"model": "auto", "input": "And?", "previous_response_id": "x" * 300},
    )

    for answer in (read, gone):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["type"] == "not_found_error"
    assert continued.status_code in (400, 404), continued.text
    assert continued.json()["error"]["param"] == "previous_response_id"


def test_a_stream_the_client_leaves_is_kept_as_far_as_it_went(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    pieces = [f"p{i}" for i in range(40)]
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(pieces, usage=(5, 40)), chunk_delay_s=0.1),
        Reply.sse(openai_sse(["Go on."])),
    )
    key = new_key()

    with httpx.stream(
        "POST",
        f"{live_server_url}/v1/responses",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "auto", "input": "Count", "stream": True},
        timeout=30,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"delta":"p1"' in line:
                break
    (row,) = wait_rows(1, entry_point="responses")
    deadline = time.monotonic() + 10
    while not StoredResponse.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stored = StoredResponse.objects.get()
    continued = client(live_server_url, key).responses.create(
        model="auto", input="And?", previous_response_id=stored.id
    )

    assert row.status == RequestLog.Status.CANCELLED
    kept = stored.response
    assert (kept["status"], kept["incomplete_details"], kept["usage"]) == (
        "incomplete",
        {"reason": "client_disconnected"},
        None,
    )
    # What the answer had streamed when the gateway saw the client go: at least what it read.
    text = stored.output_text
    assert text.startswith("p0p1") and text != "".join(pieces)
    assert kept["output"] == [
        {
            "type": "message",
            "id": kept["output"][0]["id"],
            "status": "incomplete",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    ]
    assert stored.messages == [{"role": "user", "content": "Count"}]
    assert continued.output_text == "Go on."
    assert upstream.requests[1].json()["messages"] == [
        {"role": "user", "content": "Count"},
        {"role": "assistant", "content": text},
        {"role": "user", "content": "And?"},
    ]
