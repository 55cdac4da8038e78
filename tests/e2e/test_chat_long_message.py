"""A pasted message too long for every model's window, in real Chromium against the web process
(uvicorn) and a fake upstream: the chat shows "part N of 5" as the parts are answered, then
"combining the parts", and the answer carries a note that it was assembled from 5 parts. The
model's text is shown as text, never run as markup."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import WebSocket, async_playwright, expect

from chat.models import Message
from providers.models import LLMModel
from tests.chat.conftest import chat_path
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS
from tests.gateway.test_api_long_context import DOCUMENT
from tests.providers.conftest import upstream, upstream_server  # noqa: F401
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import every_task_to, settle_config, upstream_models
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery"
QUESTION = "Which incidents happened?"
FINAL = 'Thirty incidents <img src=x onerror=alert(1)> and <script>alert("pwned")</script>'


def _registry(server: UpstreamServer) -> None:
    """`alpha` and `beta` with 2,000-token windows and answers of at most 100 tokens: the
    18,000-character report fits neither, and is read in 5 parts and one combining step."""
    models = upstream_models(server)
    every_task_to("long-policy", models["alpha"], models["beta"])
    LLMModel.objects.update(context_window=2000, max_output_tokens=100)
    get_user_model().objects.create_user("maria", password=PASSWORD)
    settle_config()


async def test_a_long_pasted_message_shows_its_parts_and_is_assembled_from_them(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    part = Reply.sse(openai_sse(["ok"], usage=(1000, 20)), delay_s=1.0)
    final = Reply.sse(openai_sse([FINAL], usage=(1000, 20)), delay_s=1.5)
    upstream.reply("POST", chat_path("alpha"), part, part, part, part, part, final)
    frames: list[dict[str, Any]] = []
    dialogs: list[str] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        page.on("websocket", watch)
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await page.goto(f"{live_server_url}/accounts/login/?next=/chat/")
        await page.fill("#id_username", "maria")
        await page.fill("#id_password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("#ws-state")).to_have_text("connected")

        await page.fill("#prompt", f"{QUESTION}\n\n{DOCUMENT}")
        await page.press("#prompt", "Enter")
        answer = page.locator(".msg.assistant").first
        waiting = answer.locator(".waiting-label")
        await expect(waiting).to_have_text(re.compile(r"^Answering by parts: part [1-5] of 5$"))
        await expect(waiting).to_have_text("Answering by parts: combining the parts…")
        await expect(answer.locator(".meta .plan-note")).to_have_text(
            "Assembled from 5 parts of a message too long to read at once (6 model calls).",
            timeout=15_000,
        )
        # The model's markup is shown as text: no element of it, nothing run.
        await expect(answer.locator(".body")).to_contain_text("Thirty incidents")
        assert await answer.locator(".body img, .body script").count() == 0
        await expect(answer.locator(".badge .model")).to_have_text("alpha:alpha-model")
        await expect(page.locator("#stop")).to_be_disabled()

        # The note stays with the answer when the conversation is opened again.
        await page.reload()
        stored = page.locator(".msg.assistant").first
        await expect(stored.locator(".meta .plan-note")).to_have_text(
            "Assembled from 5 parts of a message too long to read at once (6 model calls)."
        )
        await browser.close()

    rid = frames[0]["requests"][0]["request_id"]
    assert [
        (f["stage"], f["parts_done"], f["parts"])
        for f in frames
        if f["type"] == "chat.progress" and f["request_id"] == rid
    ] == [
        ("parts", 0, 5),
        ("parts", 1, 5),
        ("parts", 2, 5),
        ("parts", 3, 5),
        ("parts", 4, 5),
        ("parts", 5, 5),
        ("combining", 5, 5),
    ]
    assert dialogs == []
    saved = await Message.objects.aget(request_id=rid)
    assert (saved.content, saved.badge["plan"]["parts"]) == (FINAL, 5)
