"""The chat refuses a client's mistake with a clear error frame: a frame it could not store
(a NUL character) before anything is saved, and a prompt no model's window can hold as
`TOKEN_LIMIT_EXCEEDED`, not as "no eligible model"."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Message
from providers.models import LLMModel
from tests.chat.conftest import chat_registry
from tests.chat.test_consumer import ask, connect, frames_until, wait_log
from tests.providers.upstream_server import UpstreamServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_frame_with_a_nul_character_is_refused_before_anything_is_saved(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("hello\x00there"))
    refused = await socket.receive_json_from(timeout=15)
    await socket.send_json_to(ask("hello", model="alpha:alpha-model\x00"))
    refused_model = await socket.receive_json_from(timeout=15)

    assert refused["type"] == "error"
    assert refused["code"] == "INVALID_REQUEST"
    assert refused["message"] == "content: must not contain a NUL character (\\u0000)"
    assert refused_model["message"] == "model: must not contain a NUL character (\\u0000)"
    assert await Conversation.objects.acount() == 0
    assert upstream.requests == []
    await socket.disconnect()


async def test_a_prompt_no_window_can_hold_is_a_token_limit_error_frame(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    await LLMModel.objects.aupdate(context_window=200, max_output_tokens=50)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("word " * 800))  # 1000 tokens, five times any window
    frames = await frames_until(socket, "chat.error", "chat.done")

    error = frames[-1]
    assert error["type"] == "chat.error"
    assert error["code"] == "TOKEN_LIMIT_EXCEEDED"
    assert error["message"] == (
        "this request needs 1000 tokens (the prompt plus max_tokens), more than the context "
        "window of any enabled model (200 tokens); shorten the prompt or lower max_tokens"
    )
    row = await wait_log(error["request_id"])
    assert (row.status, row.error_code) == ("invalid", "TOKEN_LIMIT_EXCEEDED")
    assert upstream.requests == []
    await socket.disconnect()


async def test_a_flagged_prompt_without_a_local_model_is_refused_and_the_conversation_kept(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(chat_registry)(upstream)  # cloud models only
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Write to jane.doe@acme-corp.com about the invoice"))
    frames = await frames_until(socket, "chat.error", "chat.done")
    await socket.send_json_to(ask("Write a haiku", local_only=True))
    marked = await frames_until(socket, "chat.error", "chat.done")

    error = frames[-1]
    assert (error["type"], error["code"]) == ("chat.error", "PRIVACY_NO_LOCAL_MODEL")
    assert "the privacy agent found email" in error["message"]
    assert "jane.doe" not in error["message"]
    assert marked[-1]["code"] == "PRIVACY_NO_LOCAL_MODEL"
    assert "the request asks for local models only" in marked[-1]["message"]
    # The user's own words stay in their conversation; nothing reached a cloud model.
    saved = [m.content async for m in Message.objects.filter(role="user").order_by("pk")]
    assert saved == ["Write to jane.doe@acme-corp.com about the invoice", "Write a haiku"]
    row = await wait_log(error["request_id"])
    assert (row.status, row.error_code) == ("invalid", "PRIVACY_NO_LOCAL_MODEL")
    assert row.decision_trace["privacy"]["triggered"] == ["email"]
    assert upstream.requests == []
    await socket.disconnect()
