"""No field of a chat completions body is dropped silently: a field that would change the answer
and that the gateway cannot carry yet (seed, logprobs, ...) is refused with a 400 naming it,
unless it holds its neutral value; the deprecated `functions` and `function_call` are refused
pointing to tools; a field OpenAI does not define is refused too;
fields that change nothing (service_tier, store, ...) are accepted. Through the openai SDK
against the live server and a local upstream."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from analytics.models import RequestLog
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
REFUSAL = (
    "not supported by this gateway yet: the answer would ignore it, so the request is refused "
    "(leave it out; docs/api.md lists what each field does)"
)


def client(live_server_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 7),
        ("frequency_penalty", 0.5),
        ("top_logprobs", 2),
        ("logprobs", True),
        ("presence_penalty", 0.5),
        ("logit_bias", {"50256": -100}),
        ("reasoning_effort", "high"),
    ],
)
def test_a_field_the_answer_would_ignore_is_refused_by_name(
    live_server_url: str, upstream: UpstreamServer, field: str, value: Any
) -> None:
    gateway_registry(upstream)
    key = new_key()

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, key).chat.completions.create(
            model="auto", messages=MESSAGES, extra_body={field: value}
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("INVALID_REQUEST", field)
    assert error["message"] == f"{field}: {REFUSAL}"
    assert upstream.requests == []
    (row,) = wait_rows(1)
    assert (row.status, row.error_code) == (RequestLog.Status.INVALID, "INVALID_REQUEST")


@pytest.mark.parametrize(
    ("field", "value"),
    [("functions", [TOOL["function"]]), ("function_call", {"name": "weather"})],
)
def test_the_deprecated_function_fields_are_refused_pointing_to_tools(
    live_server_url: str, upstream: UpstreamServer, field: str, value: Any
) -> None:
    gateway_registry(upstream)

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).chat.completions.create(
            model="auto", messages=MESSAGES, extra_body={field: value}
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["message"]) == (
        field,
        f"{field}: deprecated by OpenAI and not read here: use tools and tool_choice",
    )
    assert upstream.requests == []


def test_a_field_openai_does_not_define_is_refused(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)

    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server_url, new_key()).chat.completions.create(
            model="auto", messages=MESSAGES, extra_body={"top_k": 40}
        )

    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["message"]) == ("top_k", "top_k: unknown field")
    assert upstream.requests == []


def test_neutral_values_and_fields_that_change_nothing_are_answered(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi"], usage=(10, 2))))

    neutral: dict[str, Any] = {
        "tools": [],
        "response_format": {"type": "text"},
        "logprobs": False,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "service_tier": "auto",
        "store": False,
        "parallel_tool_calls": True,
        "extra_body": {"prompt_cache_key": "k1", "tool_choice": "none", "seed": None},
    }

    completion = client(live_server_url, new_key()).chat.completions.create(
        model="auto", messages=MESSAGES, **neutral
    )

    assert completion.choices[0].message.content == "Hi"
    (sent,) = [r.json() for r in upstream.requests if r.path == chat_path("alpha")]
    # What reaches the provider is what the gateway carries, nothing of the rest.
    assert sorted(sent) == ["messages", "model", "stream", "stream_options"]
