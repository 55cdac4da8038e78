"""`POST /v1/completions` through the official openai SDK against the live ASGI server: the
prompt routed as one user message, costed and logged like chat, in the text_completion shape."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from analytics.models import RequestLog
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


def test_whole_answer_is_a_text_completion_costed_and_logged(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Once ", "upon"], usage=(1000, 200)))
    )
    key = new_key()

    raw = client(live_server_url, key).completions.with_raw_response.create(
        model="auto", prompt="Tell a story", max_tokens=20, temperature=0.5, stop=["\n"]
    )
    answer = raw.parse()

    assert answer.object == "text_completion"
    assert [c.text for c in answer.choices] == ["Once upon"]
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].index == 0
    assert answer.model == "alpha:alpha-model"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (1000, 200)
    (sent,) = upstream.requests
    assert sent.json()["messages"] == [{"role": "user", "content": "Tell a story"}]
    assert (sent.json()["max_tokens"], sent.json()["stop"]) == (20, ["\n"])
    (row,) = wait_rows(1, request_id=raw.headers["x-orchestrator-request-id"])
    assert row.entry_point == "completions"
    assert row.status == RequestLog.Status.SUCCESS
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    assert row.cost_usd == Decimal("0.00325000")


def test_streamed_chunks_then_done(live_server_url: str, upstream: UpstreamServer) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["a", "b", "c"], usage=(7, 3))))
    key = new_key()

    chunks = list(
        client(live_server_url, key).completions.create(
            model="auto",
            prompt=["abc"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert {c.object for c in chunks} == {"text_completion"}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "abc"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    # The upstream's pieces may arrive together: how many text chunks is not fixed.
    assert finishes[-1] == "stop"
    assert set(finishes[:-1]) == {None}
    assert chunks[-2].choices[0].text == ""
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)
    (row,) = wait_rows(1, entry_point="completions")
    assert (row.input_tokens, row.output_tokens) == (7, 3)


def test_fields_that_would_change_the_answer_are_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()
    sdk = client(live_server_url, key)

    with pytest.raises(openai.BadRequestError) as echo:
        sdk.completions.create(model="auto", prompt="hi", echo=True)
    with pytest.raises(openai.BadRequestError) as several:
        sdk.completions.create(model="auto", prompt=["one", "two"])
    with pytest.raises(openai.BadRequestError) as n:
        sdk.completions.create(model="auto", prompt="hi", n=2)

    assert echo.value.body["param"] == "echo"  # type: ignore[index]
    assert several.value.body["message"] == (  # type: ignore[index]
        "prompt: only one prompt per request is supported"
    )
    assert n.value.body["message"] == "n: only n=1 is supported"  # type: ignore[index]
    assert upstream.requests == []
