"""A `/v1` answer closes every async generator it opened (adapter, framing, chain, journal)
before it is done with it. One left open would be closed later by asyncio's finalizer hook: a
wake-up of the event loop through its self-pipe and a task of its own, per generator and per
request, and an upstream response released only whenever the garbage collector gets to it."""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from analytics.models import RequestLog
from orchestrator_site.asgi import application
from routing.pipeline.journal import journal_background_idle
from tests.asgi_client import asgi_request
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)


async def test_v1_answers_leave_no_generator_to_the_finalizer_hook(
    upstream: UpstreamServer,
) -> None:
    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Hel", "lo!"], usage=(9, 2))))
    key = await sync_to_async(new_key)()
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]

    def body(**extra: Any) -> bytes:
        messages = [{"role": "user", "content": "Say hello"}]
        return json.dumps({"model": "auto", "messages": messages, **extra}).encode()

    finalized: list[str] = []
    firstiter, finalizer = sys.get_asyncgen_hooks()
    assert finalizer is not None  # the running loop's hook

    def recording_finalizer(agen: Any) -> None:
        finalized.append(agen.__qualname__)
        finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=recording_finalizer)
    try:
        plain = await asgi_request(
            application, "POST", "/v1/chat/completions", body=body(), headers=headers
        )
        streamed = await asgi_request(
            application, "POST", "/v1/chat/completions", body=body(stream=True), headers=headers
        )
        refused = await asgi_request(
            application,
            "POST",
            "/v1/chat/completions",
            body=body(model="nobody:none"),
            headers=headers,
        )
        await journal_background_idle()
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)

    assert plain.status == 200
    assert json.loads(plain.body)["choices"][0]["message"]["content"] == "Hello!"
    assert streamed.status == 200
    assert streamed.body.endswith(b"data: [DONE]\n\n")
    # The text, however its pieces were grouped into events.
    events = [
        json.loads(frame.removeprefix(b"data: "))
        for frame in streamed.body.split(b"\n\n")
        if frame.startswith(b"data: {")
    ]
    text = "".join(
        choice["delta"].get("content") or "" for event in events for choice in event["choices"]
    )
    assert text == "Hello!"
    assert refused.status == 400
    assert finalized == []
    statuses = await sync_to_async(
        lambda: sorted(RequestLog.objects.values_list("status", flat=True))
    )()
    assert statuses == sorted(
        [RequestLog.Status.SUCCESS, RequestLog.Status.SUCCESS, RequestLog.Status.INVALID]
    )
