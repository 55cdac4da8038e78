"""The one HTTP-to-typed-error mapping, and the pool every adapter shares."""

from __future__ import annotations

import asyncio

import pytest

from providers.adapters.http_client import (
    ConnectFailed,
    ConnectionCut,
    Headers,
    ProtocolViolation,
    WireTimeout,
    upstream_pool,
)
from providers.adapters.types import (
    ContextTooLong,
    Endpoint,
    InvalidResponse,
    ProviderAuthFailed,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.adapters.upstream import provider_error, retry_after_s, timeout_for


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (400, ProviderRejected, False),
        (401, ProviderAuthFailed, False),
        (403, ProviderAuthFailed, False),
        (404, ProviderRejected, False),
        (408, ProviderTimeout, True),
        (422, ProviderRejected, False),
        (429, ProviderRateLimited, True),
        (500, ProviderUnavailable, True),
        (502, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (529, ProviderUnavailable, True),
    ],
)
def test_status_maps_to_its_type(status, error_type, retryable):
    error = provider_error(status=status, body=b'{"error": {"message": "upstream words"}}')

    assert type(error) is error_type
    assert error.retryable is retryable
    assert error.status == status
    assert error.message == "upstream words"


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"message": "m"}}',
        b'{"type": "error", "error": {"type": "api_error", "message": "m"}}',
        b'{"error": {"code": 500, "message": "m", "status": "INTERNAL"}}',
        b'{"error": "m"}',
        b'{"detail": "m"}',
        b"m",
    ],
    ids=["openai", "anthropic", "google", "ollama", "detail", "plain-text"],
)
def test_upstream_message_is_carried_from_each_error_shape(body):
    assert provider_error(status=500, body=body).message == "m"


def test_empty_body_falls_back_to_the_status_phrase():
    assert provider_error(status=503, body=b"").message == "HTTP 503 Service Unavailable"


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 2048 tokens. However, you requested 3000",
        "prompt is too long: 208310 tokens > 200000 maximum",
        "The input token count (1196265) exceeds the maximum number of tokens allowed",
        "Requested tokens (3000) exceed context window of 2048",
    ],
)
def test_context_too_long_wording_on_400(message):
    error = provider_error(status=400, body={"error": {"message": message}})

    assert type(error) is ContextTooLong
    assert error.retryable is False


def test_context_wording_on_500_stays_retryable():
    error = provider_error(status=500, body={"error": {"message": "context window overflow"}})

    assert type(error) is ProviderUnavailable


def test_retry_after_seconds():
    headers = Headers({"retry-after": "12"})

    assert provider_error(status=429, headers=headers).retry_after_s == 12.0


def test_retry_after_http_date_is_measured_against_the_date_header():
    headers = Headers(
        {
            "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT",
            "date": "Wed, 21 Oct 2015 07:28:00 GMT",
        }
    )

    assert retry_after_s(headers) == 30.0


def test_retry_after_date_in_the_past_is_zero():
    headers = Headers(
        {"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT", "date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )

    assert retry_after_s(headers) == 0.0


@pytest.mark.parametrize(
    "headers",
    [{}, {"retry-after": "soon"}, {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}],
    ids=["absent", "garbage", "date-without-date-header"],
)
def test_unusable_retry_after_is_none(headers):
    assert provider_error(status=429, headers=Headers(headers)).retry_after_s is None


def test_503_keeps_its_retry_after():
    headers = Headers({"retry-after": "3"})

    assert provider_error(status=503, headers=headers).retry_after_s == 3.0


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (WireTimeout("connect", 5), ProviderTimeout),
        (WireTimeout("read", 120), ProviderTimeout),
        (WireTimeout("pool", 10), ProviderTimeout),
        (ConnectFailed("refused"), ProviderUnavailable),
        (ConnectionCut("reset"), ProviderUnavailable),
        (ProtocolViolation("invalid chunk size line"), ProviderUnavailable),
        (ValueError("Expecting value"), ProviderUnavailable),
    ],
)
def test_transport_failures_map_to_retryable_types(exc, error_type):
    error = provider_error(exc=exc)

    assert type(error) is error_type
    assert error.retryable is True
    assert error.status is None


def test_in_stream_error_without_status_is_retryable_unless_context():
    assert type(provider_error(body={"error": "runner crashed"})) is ProviderUnavailable
    too_long = provider_error(body={"error": "input is too long for the context window"})
    assert type(too_long) is ContextTooLong


def test_2xx_given_as_an_error_is_invalid_response():
    assert type(provider_error(status=200, body=b"{}")) is InvalidResponse


def test_the_key_never_appears_in_messages():
    key = "sk-live-abcdefghijklmnop1234"
    echoed = {"error": {"message": f"key {key} is revoked; sk-live-****1234 and sk-li...1234"}}

    error = provider_error(status=401, body=echoed, secret=key)

    assert error.message == "key [redacted] is revoked; [redacted] and [redacted]"
    exc_error = provider_error(exc=ConnectFailed(f"failed for {key}"), secret=key)
    assert key not in exc_error.message


def test_timeouts_come_from_the_endpoint():
    timeout = timeout_for(Endpoint(base_url="http://x", connect_timeout_s=1.5, read_timeout_s=9))

    assert (timeout.connect, timeout.read) == (1.5, 9)


async def test_one_pool_per_event_loop():
    first = upstream_pool()

    assert upstream_pool() is first
    assert first.is_closed is False


def test_a_new_event_loop_gets_its_own_pool():
    async def grab() -> object:
        return upstream_pool()

    one, two = asyncio.run(grab()), asyncio.run(grab())

    assert one is not two
