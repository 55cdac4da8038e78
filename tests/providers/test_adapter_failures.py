"""Every adapter against the same upstream failures, over real sockets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.adapters.types import (
    ChatChunk,
    InvalidResponse,
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.local_model import free_port
from tests.providers.adapter_cases import (
    ANSWER_PIECES,
    API_KEY,
    CASES,
    Case,
    collect,
    upstream_message,
)
from tests.providers.upstream_server import Reply, UpstreamServer

by_kind = pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
MODES = pytest.mark.parametrize("mode", ["stream", "complete"])


async def run(case: Case, upstream: UpstreamServer, mode: str, **timeouts: float) -> object:
    endpoint = case.endpoint(upstream, **timeouts)
    if mode == "stream":
        return await collect(case.adapter, endpoint, case.request())
    return await case.adapter.complete(endpoint, case.request())


def script(case: Case, upstream: UpstreamServer, mode: str, reply: Reply) -> None:
    path = case.stream_path if mode == "stream" else case.complete_path
    upstream.reply("POST", path, reply)


def assert_no_key(exc: ProviderError) -> None:
    for text in (str(exc), repr(exc), exc.message, repr(exc.args)):
        assert API_KEY not in text
        assert API_KEY[-4:] not in text


@by_kind
async def test_stream_yields_text_in_order_then_one_final_chunk(case, upstream):
    # Pieces apart in time come apart (arriving together, an adapter may join them).
    upstream.reply("POST", case.stream_path, case.stream_reply().but(chunk_delay_s=0.02))

    chunks = await collect(case.adapter, case.endpoint(upstream), case.request())

    assert [c.text for c in chunks[:-1]] == ANSWER_PIECES[case.kind]
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert chunks[-1].text == ""
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None


@by_kind
async def test_frames_split_across_reads_are_reassembled(case, upstream):
    whole = case.stream_body()
    upstream.reply(
        "POST", case.stream_path, Reply.chunked(whole, 7, content_type=case.content_type)
    )

    chunks = await collect(case.adapter, case.endpoint(upstream), case.request())

    assert "".join(c.text for c in chunks) == "".join(ANSWER_PIECES[case.kind])
    assert chunks[-1].finish_reason == "stop"


@by_kind
@MODES
async def test_500_is_unavailable_with_upstream_message(case, upstream, mode):
    script(case, upstream, mode, Reply.json(case.error_500, status=500))

    with pytest.raises(ProviderError) as caught:
        await run(case, upstream, mode)

    assert type(caught.value) is ProviderUnavailable
    assert caught.value.retryable is True
    assert caught.value.status == 500
    assert caught.value.message == upstream_message(case.error_500)


@by_kind
@MODES
async def test_429_is_rate_limited_with_retry_after(case, upstream, mode):
    script(
        case,
        upstream,
        mode,
        Reply.json(case.error_429, status=429, headers={"retry-after": "7"}),
    )

    with pytest.raises(ProviderRateLimited) as caught:
        await run(case, upstream, mode)

    assert caught.value.status == 429
    assert caught.value.retry_after_s == 7.0
    assert caught.value.retryable is True
    assert caught.value.code == "RATE_LIMIT_EXCEEDED"
    assert caught.value.message == upstream_message(case.error_429)


@by_kind
@MODES
async def test_401_is_auth_failure_without_the_key(case, upstream, mode):
    script(case, upstream, mode, Reply.json(case.error_401, status=401))

    with pytest.raises(ProviderAuthFailed) as caught:
        await run(case, upstream, mode)

    assert caught.value.status == 401
    assert caught.value.retryable is False
    assert caught.value.code == "AUTHENTICATION_FAILED"
    assert_no_key(caught.value)


@by_kind
@MODES
async def test_no_answer_within_read_timeout_is_a_timeout(case, upstream, mode):
    script(case, upstream, mode, case.stream_reply().but(delay_s=2.0))

    with pytest.raises(ProviderError) as caught:
        await run(case, upstream, mode, read_timeout_s=0.2)

    assert type(caught.value) is ProviderTimeout
    assert caught.value.code == "TIMEOUT"
    assert caught.value.retryable is True


@by_kind
async def test_stall_mid_stream_is_a_timeout(case, upstream):
    reply = case.stream_reply()
    frames = len(reply.chunks or ())
    stalled = reply.but(stall_after_chunks=frames - 1, stall_s=2.0)
    upstream.reply("POST", case.stream_path, stalled)
    received: list[ChatChunk] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in case.adapter.stream(
            case.endpoint(upstream, read_timeout_s=0.3), case.request()
        ):
            received.append(chunk)

    assert type(caught.value) is ProviderTimeout
    assert received, "the text before the stall was delivered"
    assert all(c.finish_reason is None for c in received)


@by_kind
async def test_connection_reset_mid_stream_is_unavailable(case, upstream):
    reply = case.stream_reply()
    # Cut before the last frame, which for every protocol holds or is the terminator.
    upstream.reply(
        "POST", case.stream_path, reply.but(reset_after_chunks=len(reply.chunks or ()) - 1)
    )
    received: list[ChatChunk] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in case.adapter.stream(case.endpoint(upstream), case.request()):
            received.append(chunk)

    assert type(caught.value) is ProviderUnavailable
    assert "connection cut" in caught.value.message
    assert all(c.finish_reason is None for c in received)


@by_kind
async def test_stream_without_terminator_is_invalid_not_success(case, upstream):
    body = case.stream_body()
    assert body.endswith(case.terminator)
    upstream.reply("POST", case.stream_path, case.stream_reply(body[: -len(case.terminator)]))
    received: list[ChatChunk] = []

    with pytest.raises(InvalidResponse) as caught:
        async for chunk in case.adapter.stream(case.endpoint(upstream), case.request()):
            received.append(chunk)

    assert caught.value.code == "INVALID_RESPONSE"
    assert caught.value.retryable is True
    assert received, "the text before the cut was still delivered"
    assert all(c.finish_reason is None for c in received)


@by_kind
async def test_malformed_json_in_stream_is_invalid_response(case, upstream):
    body = case.stream_body()
    first_frame = (case.stream_reply(body).chunks or (b"",))[0]
    upstream.reply(
        "POST",
        case.stream_path,
        case.stream_reply(first_frame + case.malformed_frame + body[len(first_frame) :]),
    )

    with pytest.raises(InvalidResponse) as caught:
        await collect(case.adapter, case.endpoint(upstream), case.request())

    assert "malformed JSON" in caught.value.message


@by_kind
async def test_malformed_json_body_is_invalid_response(case, upstream):
    upstream.reply("POST", case.complete_path, Reply.json(b'{"id": "x", "choices": [', status=200))

    with pytest.raises(InvalidResponse):
        await case.adapter.complete(case.endpoint(upstream), case.request())


@by_kind
async def test_list_models_auth_failure(case, upstream):
    upstream.reply("GET", case.models_path, Reply.json(case.error_401, status=401))

    with pytest.raises(ProviderAuthFailed) as caught:
        await case.adapter.list_models(case.endpoint(upstream))

    assert_no_key(caught.value)


@by_kind
async def test_connection_refused_is_unavailable(case, upstream):
    endpoint = replace(
        case.endpoint(upstream), base_url=f"http://127.0.0.1:{free_port()}{case.base_path}"
    )

    with pytest.raises(ProviderError) as caught:
        await case.adapter.list_models(endpoint)

    assert type(caught.value) is ProviderUnavailable
    assert "cannot connect" in caught.value.message
