"""The chat websocket end to end: real Postgres, Redis, gateway and local upstream servers."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from analytics.models import RequestLog
from chat.models import Conversation, Message
from chat.services import conversation_create
from core.consumers import CLOSE_UNAUTHENTICATED
from orchestrator_site.asgi import application
from providers.local_model import MODEL_ALIAS
from providers.models import LLMModel, Provider
from routing.engine.taxonomy import TASK_TYPES
from routing.models import RoutingPolicy, RoutingRule
from tests.chat.conftest import chat_path, chat_registry
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")
TIMEOUT_S = 15


def _login(username: str) -> tuple[int, str]:
    user = get_user_model().objects.create_user(username, password="pw-123-secret")
    client = Client()
    client.force_login(user)
    return user.id, client.cookies["sessionid"].value


async def connect(username: str) -> tuple[int, WebsocketCommunicator]:
    user_id, session = await database_sync_to_async(_login)(username)
    socket = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[HOST, ORIGIN, (b"cookie", f"sessionid={session}".encode())],
    )
    connected, _ = await socket.connect()
    assert connected
    return user_id, socket


async def frames_until(socket: WebsocketCommunicator, *last: str) -> list[dict[str, Any]]:
    """Frames up to and including the first whose type is in `last`."""
    frames = []
    while True:
        frame = await socket.receive_json_from(timeout=TIMEOUT_S)
        frames.append(frame)
        if frame["type"] in last:
            return frames


async def wait_log(request_id: str) -> RequestLog:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        row = await RequestLog.objects.filter(request_id=request_id).afirst()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no request log row for {request_id}"
            return row
        await asyncio.sleep(0.05)


def ask(content: str, conversation_id: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "chat.request", "conversation_id": conversation_id, "content": content, **extra}


async def test_answer_streams_in_order_and_is_saved_with_its_badge(
    upstream: UpstreamServer,
) -> None:
    models = await database_sync_to_async(chat_registry)(upstream)
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo", "!"], usage=(1000, 200)), chunk_delay_s=0.02),
    )
    user_id, socket = await connect("ana")

    await socket.send_json_to(ask("Say hello"))
    frames = await frames_until(socket, "chat.done")

    assert [f["type"] for f in frames] == [
        "chat.accepted",
        "chat.started",
        "chat.delta",
        "chat.delta",
        "chat.delta",
        "chat.done",
    ]
    accepted, started, done = frames[0], frames[1], frames[-1]
    rid = accepted["requests"][0]["request_id"]
    assert accepted["created"] is True
    assert accepted["title"] == "Say hello"
    assert accepted["requests"] == [{"request_id": rid, "model": "auto"}]
    assert {f["request_id"] for f in frames[1:]} == {rid}
    assert [f["text"] for f in frames[2:5]] == ["Hel", "lo", "!"]
    assert (started["model_ref"], started["provider"], started["locality"]) == (
        "alpha:alpha-model",
        "alpha",
        "cloud",
    )
    assert started["decision_trace"]["policy"] == "chat-policy"
    badge = done["badge"]
    assert done["html"] == "<p>Hello!</p>\n"
    # 1000 x 1.25 / 1M + 200 x 10 / 1M
    assert Decimal(badge["cost_usd"]) == Decimal("0.00325")
    assert (badge["cost_state"], badge["cost_label"]) == ("reported", "$0.003250")
    assert (badge["input_tokens"], badge["output_tokens"], badge["fallbacks"]) == (1000, 200, 0)
    assert badge["decision_trace"]["chain"][0] == "alpha:alpha-model"

    conversation = await Conversation.objects.aget(id=accepted["conversation_id"])
    messages = [m async for m in Message.objects.filter(conversation=conversation)]
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "Say hello", "complete"),
        ("assistant", "Hello!", "complete"),
    ]
    assert str(messages[1].request_id) == rid
    assert messages[1].id == done["message_id"]
    assert (conversation.owner_id, conversation.sticky_model_id) == (user_id, models["alpha"].id)
    row = await wait_log(rid)
    assert (row.entry_point, row.status, row.user_id, row.conversation_id) == (
        "chat",
        "success",
        user_id,
        conversation.id,
    )
    assert upstream.requests[0].json()["messages"] == [{"role": "user", "content": "Say hello"}]
    await socket.disconnect()


async def test_history_goes_with_each_turn(upstream: UpstreamServer) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Four."])))
    _, socket = await connect("ana")

    await socket.send_json_to(ask("What is 2+2?"))
    first = await frames_until(socket, "chat.done")
    await socket.send_json_to(ask("And doubled?", first[0]["conversation_id"]))
    second = await frames_until(socket, "chat.done")

    assert second[0]["created"] is False
    assert upstream.requests[1].json()["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "And doubled?"},
    ]
    await socket.disconnect()


async def test_history_is_trimmed_to_the_window_and_the_client_told(
    upstream: UpstreamServer,
) -> None:
    models = await database_sync_to_async(chat_registry)(upstream)
    # 200 tokens of window, 50 kept for the answer: 150 for the prompt.
    await LLMModel.objects.filter(id=models["alpha"].id).aupdate(
        context_window=200, max_output_tokens=50
    )
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"])))
    user_id, socket = await connect("ana")
    conversation = await database_sync_to_async(conversation_create)(owner_id=user_id)
    await conversation.messages.acreate(role="user", content="old " * 100)
    await conversation.messages.acreate(role="assistant", content="older answer " * 50)
    await conversation.messages.acreate(role="user", content="recent question")
    await conversation.messages.acreate(role="assistant", content="recent answer")

    await socket.send_json_to(ask("new question", conversation.id, model="alpha:alpha-model"))
    frames = await frames_until(socket, "chat.done")

    assert [f["type"] for f in frames[:2]] == ["chat.accepted", "chat.trimmed"]
    assert frames[1] == {
        "type": "chat.trimmed",
        "conversation_id": conversation.id,
        "dropped_messages": 2,
        "kept_messages": 3,
        "budget_tokens": 150,
    }
    assert upstream.requests[0].json()["messages"] == [
        {"role": "user", "content": "recent question"},
        {"role": "assistant", "content": "recent answer"},
        {"role": "user", "content": "new question"},
    ]
    await socket.disconnect()


async def test_stop_cancels_the_stream_saves_the_partial_answer_and_logs_it(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    slow = Reply.sse(openai_sse([f"word{i} " for i in range(40)])).but(chunk_delay_s=0.25)
    upstream.reply("POST", chat_path("alpha"), slow)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Tell a long story"))
    frames = await frames_until(socket, "chat.delta")
    began = time.monotonic()
    await socket.send_json_to({"type": "chat.cancel"})
    rest = await frames_until(socket, "chat.error")
    stopped_after_s = time.monotonic() - began

    error = rest[-1]
    rid = frames[0]["requests"][0]["request_id"]
    assert stopped_after_s < 2.0
    assert (error["code"], error["request_id"], error["partial"]) == ("CANCELLED", rid, True)
    assert all(f["type"] == "chat.delta" for f in rest[:-1])
    saved = await Message.objects.aget(id=error["message_id"])
    streamed = "".join(f["text"] for f in frames + rest if f["type"] == "chat.delta")
    assert (saved.status, saved.content, str(saved.request_id)) == ("partial", streamed, rid)
    assert streamed.startswith("word0 ") and len(streamed) < len("word0 ") * 40
    row = await wait_log(rid)
    assert (row.status, row.error_code) == ("cancelled", "CANCELLED")
    # The socket is still usable: a new question gets an answer.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["again"])))
    await socket.send_json_to(ask("Short one", frames[0]["conversation_id"]))
    again = await frames_until(socket, "chat.done")
    assert again[-1]["html"] == "<p>again</p>\n"
    await socket.disconnect()


async def test_disconnect_mid_answer_cancels_and_the_request_is_still_logged(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    slow = Reply.sse(openai_sse([f"w{i} " for i in range(40)])).but(chunk_delay_s=0.25)
    upstream.reply("POST", chat_path("alpha"), slow)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Tell a long story"))
    frames = await frames_until(socket, "chat.delta")
    began = time.monotonic()
    await socket.disconnect()

    rid = frames[0]["requests"][0]["request_id"]
    row = await wait_log(rid)
    assert (row.status, row.error_code) == ("cancelled", "CANCELLED")
    assert time.monotonic() - began < 3.0
    saved = await Message.objects.aget(request_id=rid)
    assert saved.status == "partial"
    assert saved.content.startswith("w0 ")


async def test_bad_frames_get_error_frames_and_the_socket_stays_usable(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["fine"])))
    _, socket = await connect("ana")

    cases = [
        ({"type": "chat.request"}, "content must be a non-empty string"),
        (ask("   "), "content must be a non-empty string"),
        (
            ask("hi", "7"),  # type: ignore[arg-type]
            "conversation_id must be an integer or null",
        ),
        (ask("hi", model=5), "model must be a string of at most 200 characters"),
        (ask("hi", compare=["alpha:alpha-model"]), "compare takes 2 to 3 different models"),
        (
            ask("hi", compare=["a:x", "a:x"]),
            "compare takes 2 to 3 different models",
        ),
        ({"type": "chat.cancel", "request_id": "nope"}, "request_id must be a UUID"),
        ({"type": "chat.fly"}, "unknown message type 'chat.fly'"),
    ]
    for frame, message in cases:
        await socket.send_json_to(frame)
        assert await socket.receive_json_from(timeout=TIMEOUT_S) == {
            "type": "error",
            "code": "INVALID_REQUEST",
            "message": message,
        }
    await socket.send_to(text_data="[1, 2]")
    assert (await socket.receive_json_from())["message"] == 'frame must be an object with a "type"'
    await socket.send_to(text_data=json.dumps(ask("x" * 70_000)))
    assert (await socket.receive_json_from())["message"] == "frames are limited to 65536 bytes"

    await socket.send_json_to(ask("still there?"))
    frames = await frames_until(socket, "chat.done")
    assert frames[-1]["html"] == "<p>fine</p>\n"
    assert await Conversation.objects.acount() == 1
    await socket.disconnect()


async def test_anonymous_socket_is_closed_with_4401() -> None:
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=[HOST, ORIGIN])

    connected, _ = await socket.connect()

    assert connected
    assert (await socket.receive_json_from())["code"] == "AUTHENTICATION_FAILED"
    assert await socket.receive_output() == {
        "type": "websocket.close",
        "code": CLOSE_UNAUTHENTICATED,
    }
    await socket.disconnect()


async def test_another_users_conversation_cannot_be_written_to(upstream: UpstreamServer) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    ana_id, ana = await connect("ana")
    _, bob = await connect("bob")
    conversation = await database_sync_to_async(conversation_create)(
        owner_id=ana_id, title="ana only"
    )

    await bob.send_json_to(ask("let me in", conversation.id))

    assert await bob.receive_json_from(timeout=TIMEOUT_S) == {
        "type": "error",
        "code": "NOT_FOUND",
        "message": "no such conversation",
    }
    await bob.send_json_to(ask("let me in", 999_999))
    assert (await bob.receive_json_from(timeout=TIMEOUT_S))["message"] == "no such conversation"
    assert await Message.objects.acount() == 0
    assert upstream.requests == []
    await ana.disconnect()
    await bob.disconnect()


async def test_conversation_keeps_its_model_and_says_when_it_switches(
    upstream: UpstreamServer,
) -> None:
    models = await database_sync_to_async(chat_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["from alpha"])))
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["from beta"])))
    _, socket = await connect("ana")

    # Turn 1 names beta; turn 2 asks the policy, whose rules prefer alpha, and stays on beta.
    await socket.send_json_to(ask("Hello there", model="beta:beta-model"))
    first = await frames_until(socket, "chat.done")
    cid = first[0]["conversation_id"]
    await socket.send_json_to(ask("Hello again", cid))
    second = await frames_until(socket, "chat.done")

    assert second[1]["model_ref"] == "beta:beta-model"
    assert second[-1]["badge"]["decision_trace"]["sticky"] == {
        "previous_model_id": models["beta"].id,
        "kept": True,
        "reason": "conversation keeps its model",
    }
    assert "chat.switched" not in [f["type"] for f in second]

    # Beta is switched off: the next turn moves to alpha and the thread says why.
    await LLMModel.objects.filter(id=models["beta"].id).aupdate(enabled=False)
    await database_sync_to_async(_config_changed)()
    await socket.send_json_to(ask("And now?", cid))
    third = await frames_until(socket, "chat.switched")

    assert third[1]["model_ref"] == "alpha:alpha-model"
    assert [f["type"] for f in third[-2:]] == ["chat.done", "chat.switched"]
    assert third[-1] == {
        "type": "chat.switched",
        "conversation_id": cid,
        "request_id": third[0]["requests"][0]["request_id"],
        "from_model": "beta:beta-model",
        "to_model": "alpha:alpha-model",
        "reason": "switched: disabled",
    }
    thread = [(m.role, m.content) async for m in Message.objects.filter(conversation_id=cid)]
    assert thread[-2:] == [
        (
            "notice",
            "Switched from beta:beta-model to alpha:alpha-model: switched: disabled",
        ),
        ("assistant", "from alpha"),
    ]
    conversation = await Conversation.objects.aget(id=cid)
    assert conversation.sticky_model_id == models["alpha"].id
    await socket.disconnect()


def _config_changed() -> None:
    from routing.config.cache import routing_config_changed

    routing_config_changed()


async def test_compare_streams_each_model_side_by_side(upstream: UpstreamServer) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["A", "1"], usage=(10, 2)), chunk_delay_s=0.02),
    )
    upstream.reply(
        "POST",
        chat_path("beta"),
        Reply.sse(openai_sse(["B", "2"], usage=(10, 2)), chunk_delay_s=0.02),
    )
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Compare me", compare=["alpha:alpha-model", "beta:beta-model"]))
    frames = [await socket.receive_json_from(timeout=TIMEOUT_S)]
    while sum(f["type"] == "chat.done" for f in frames) < 2:
        frames.append(await socket.receive_json_from(timeout=TIMEOUT_S))

    requests = frames[0]["requests"]
    assert [r["model"] for r in requests] == ["alpha:alpha-model", "beta:beta-model"]
    by_request = {
        r["request_id"]: [f for f in frames[1:] if f["request_id"] == r["request_id"]]
        for r in requests
    }
    alpha, beta = (by_request[r["request_id"]] for r in requests)
    assert [f["type"] for f in alpha] == ["chat.started", "chat.delta", "chat.delta", "chat.done"]
    assert [f["type"] for f in beta] == ["chat.started", "chat.delta", "chat.delta", "chat.done"]
    assert (alpha[-1]["html"], beta[-1]["html"]) == ("<p>A1</p>\n", "<p>B2</p>\n")
    # 10 x 1.25 / 1M + 2 x 10 / 1M and 10 x 0.15 / 1M + 2 x 0.60 / 1M
    assert Decimal(alpha[-1]["badge"]["cost_usd"]) == Decimal("0.0000325")
    assert Decimal(beta[-1]["badge"]["cost_usd"]) == Decimal("0.0000027")
    group = frames[0]["compare_group"]
    answers = [m async for m in Message.objects.filter(role="assistant").order_by("model_ref")]
    assert [(m.content, str(m.compare_group)) for m in answers] == [("A1", group), ("B2", group)]
    conversation = await Conversation.objects.aget(id=frames[0]["conversation_id"])
    assert conversation.sticky_model_id is None
    await socket.disconnect()


async def test_failed_answer_is_reported_and_saved(upstream: UpstreamServer) -> None:
    await database_sync_to_async(chat_registry)(upstream)
    failure = Reply.json({"error": {"message": "bad request", "type": "invalid"}}, status=400)
    upstream.reply("POST", chat_path("alpha"), failure)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Break please", model="alpha:alpha-model"))
    frames = await frames_until(socket, "chat.error")

    error = frames[-1]
    assert (error["partial"], error["html"]) == (False, "")
    saved = await Message.objects.aget(id=error["message_id"])
    assert (saved.status, saved.badge) == ("failed", {"error_code": error["code"]})
    row = await wait_log(error["request_id"])
    assert row.error_code == error["code"]
    await socket.disconnect()


def _local_registry(base_url: str) -> LLMModel:
    provider = Provider.objects.create(
        name="local", kind="openai_compatible", base_url=base_url, locality="local"
    )
    model = LLMModel.objects.create(
        provider=provider,
        name=MODEL_ALIAS,
        tier="small_local",
        context_window=2048,
        max_output_tokens=24,
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    policy = RoutingPolicy.objects.create(name="local-only", is_default=True)
    for task_type in TASK_TYPES:
        RoutingRule.objects.create(policy=policy, task_type=task_type, primary=model, tiers=[])
    return model


@pytest.mark.slow
async def test_real_local_model_streams_tokens(local_model_url: str) -> None:
    model = await database_sync_to_async(_local_registry)(local_model_url)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Name three colours."))
    frames = await frames_until(socket, "chat.done", "chat.error")

    types = [f["type"] for f in frames]
    assert types[:2] == ["chat.accepted", "chat.started"]
    assert types[-1] == "chat.done"
    deltas = [f["text"] for f in frames if f["type"] == "chat.delta"]
    assert len(deltas) >= 2
    badge = frames[-1]["badge"]
    assert badge["model_ref"] == f"local:{MODEL_ALIAS}"
    assert badge["locality"] == "local"
    assert 0 < badge["output_tokens"] <= 24
    # llama.cpp's server reports no usage while streaming: tokens are counted locally, and a
    # local model's answer reads as free rather than as an estimated $0.
    assert (badge["cost_state"], badge["cost_label"]) == ("estimated", "free (local)")
    assert badge["cost_kind"] == "free"
    saved = await Message.objects.aget(id=frames[-1]["message_id"])
    assert saved.content == "".join(deltas)
    conversation = await Conversation.objects.aget(id=frames[0]["conversation_id"])
    assert conversation.sticky_model_id == model.id
    await socket.disconnect()


async def test_chat_answers_go_through_the_request_journal(upstream: UpstreamServer) -> None:
    from routing.pipeline.journal import ENTRY_PREFIX, journal_background_idle, journal_pending

    await database_sync_to_async(chat_registry)(upstream)
    slow = Reply.sse(openai_sse(["a ", "b ", "c"])).but(chunk_delay_s=0.3)
    upstream.reply("POST", chat_path("alpha"), slow)
    _, socket = await connect("ana")

    await socket.send_json_to(ask("Short story"))
    frames = await frames_until(socket, "chat.delta")
    rid = frames[0]["requests"][0]["request_id"]
    open_while_streaming = await database_sync_to_async(cache_has_entry)(ENTRY_PREFIX + rid)
    await frames_until(socket, "chat.done")
    await journal_background_idle()

    assert open_while_streaming is True
    assert (await wait_log(rid)).status == "success"
    assert await database_sync_to_async(journal_pending)() == 0
    await socket.disconnect()


def cache_has_entry(key: str) -> bool:
    from django.conf import settings
    from redis import Redis

    return bool(Redis.from_url(str(settings.REDIS_URL)).exists(key))
