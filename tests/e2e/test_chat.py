"""The chat page in real Chromium against the web process (uvicorn), the bundled local model
and a fake upstream."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import Page, WebSocket, async_playwright, expect

from analytics.models import RequestFeedback, RequestLog
from chat.models import Conversation, Message
from providers.local_model import MODEL_ALIAS
from providers.models import LLMModel, Provider
from routing.engine.taxonomy import TASK_TYPES
from routing.models import RoutingPolicy, RoutingRule
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS
from tests.providers.conftest import local_model_url, upstream, upstream_server  # noqa: F401
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
HOSTILE = 'Here: <img src=x onerror=alert(1)> and <script>alert("pwned")</script> done'
PASSWORD = "correct horse battery"


def _registry(local_url: str, fake_url: str) -> None:
    local = Provider.objects.create(
        name="local", kind="openai_compatible", base_url=local_url, locality="local"
    )
    smol = LLMModel.objects.create(
        provider=local,
        name=MODEL_ALIAS,
        tier="small_local",
        context_window=2048,
        max_output_tokens=48,
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    fake = Provider.objects.create(
        name="fake", kind="openai_compatible", base_url=f"{fake_url}/fake/v1", locality="cloud"
    )
    LLMModel.objects.create(
        provider=fake,
        name="fake-model",
        tier="standard",
        input_price_per_mtok_usd=Decimal("1"),
        output_price_per_mtok_usd=Decimal("2"),
    )
    policy = RoutingPolicy.objects.create(name="e2e-local", is_default=True)
    for task_type in TASK_TYPES:
        RoutingRule.objects.create(policy=policy, task_type=task_type, primary=smol, tiers=[])
    get_user_model().objects.create_user("maria", password=PASSWORD)


async def _log_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/accounts/login/?next=/chat/")
    await page.fill("#id_username", "maria")
    await page.fill("#id_password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#ws-state")).to_have_text("connected")


async def test_chat_streams_badges_feedback_stop_rename_delete_and_never_runs_model_html(
    live_server_url: str,
    local_model_url: str,  # noqa: F811
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(local_model_url, upstream.url)
    frames: list[dict[str, Any]] = []
    dialogs: list[str] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        page.on("websocket", watch)

        async def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.on("dialog", on_dialog)
        await _log_in(page, live_server_url)

        # 1. The real local model answers, token by token.
        await page.fill("#prompt", "Name three colours.")
        await page.press("#prompt", "Enter")
        answer = page.locator(".msg.assistant").first
        await expect(answer.locator(".badge .model")).to_have_text(
            f"local:{MODEL_ALIAS}", timeout=60_000
        )
        deltas = [f["text"] for f in frames if f["type"] == "chat.delta"]
        assert len(deltas) >= 2
        assert [f["type"] for f in frames if f["type"] != "chat.delta"][-1] == "chat.done"
        await expect(answer.locator(".body")).to_have_text("".join(deltas).strip())
        await expect(answer.locator(".badge .locality")).to_have_text("local")
        await expect(answer.locator(".badge .cost")).to_have_text("free (local)")
        await expect(answer.locator(".badge .fallbacks")).to_have_text("0 fallbacks")
        await expect(page).to_have_url(f"{live_server_url}/chat/{frames[0]['conversation_id']}/")
        await expect(page.locator("#chat-title")).to_have_text("Name three colours.")

        # 2. Why this model: the policy, the chain and the agents at that moment.
        why = answer.locator("details.why")
        await why.locator(":scope > summary").click()
        facts = why.locator("dl.why-facts")
        await expect(facts.locator("dt").nth(1)).to_have_text("Policy")
        await expect(facts.locator("dd").nth(1)).to_have_text("e2e-local")
        await expect(facts.locator("dd").first).to_have_text(f"local:{MODEL_ALIAS}")
        await expect(why.get_by_role("heading", name="Agent states")).to_be_visible()

        # 3. Thumbs up is stored against the request.
        await answer.get_by_role("button", name="Good answer").click()
        await expect(answer.get_by_role("button", name="Good answer")).to_have_attribute(
            "aria-pressed", "true"
        )
        request_id = frames[-1]["request_id"]
        feedback = await RequestFeedback.objects.aget(request__request_id=request_id)
        assert feedback.positive is True

        # 4. A long answer is stopped mid-stream.
        slow = Reply.sse(openai_sse([f"tick{i} " for i in range(80)])).but(chunk_delay_s=0.2)
        upstream.reply("POST", "/fake/v1/chat/completions", slow)
        await page.select_option("#model", "fake:fake-model")
        await page.fill("#prompt", "Count for a long time")
        await page.press("#prompt", "Enter")
        stopping = page.locator(".msg.assistant").nth(1)
        await expect(stopping.locator(".body")).to_contain_text("tick1")
        await page.click("#stop")
        await expect(stopping.locator(".meta .error")).to_have_text("Stopped.")
        await expect(page.locator("#stop")).to_be_disabled()
        stopped_id = [f for f in frames if f["type"] == "chat.error"][-1]["request_id"]
        row = await RequestLog.objects.aget(request_id=stopped_id)
        assert row.status == "cancelled"
        partial = await Message.objects.aget(request_id=stopped_id)
        assert partial.status == "partial"
        assert "tick79" not in partial.content

        # 5. Model output with HTML and script renders as text; no dialog ever opens.
        upstream.reply("POST", "/fake/v1/chat/completions", Reply.sse(openai_sse([HOSTILE])))
        await page.fill("#prompt", "Show me some HTML")
        await page.press("#prompt", "Enter")
        hostile = page.locator(".msg.assistant").nth(2)
        await expect(hostile.locator(".badge .model")).to_have_text("fake:fake-model")
        await expect(hostile.locator(".body")).to_have_text(HOSTILE)
        assert await page.locator("#thread img, #thread script").count() == 0
        await page.reload()
        await expect(page.locator(".msg.assistant").nth(2).locator(".body")).to_have_text(HOSTILE)
        assert await page.locator("#thread img, #thread script").count() == 0
        assert dialogs == []

        # 6. Rename, then delete.
        await page.get_by_text("Rename or delete").click()
        await page.fill("input[name=title]", "Colours and counting")
        await page.get_by_role("button", name="Rename").click()
        await expect(page.locator("#chat-title")).to_have_text("Colours and counting")
        await expect(page.locator("#conversations")).to_contain_text("Colours and counting")
        await page.get_by_text("Rename or delete").click()
        await page.get_by_role("button", name="Delete").click()
        await expect(page).to_have_url(f"{live_server_url}/chat/")
        await expect(page.locator("#conversations")).to_have_text("No conversations yet.")
        assert dialogs == ["Delete this conversation?"]
        assert await Conversation.objects.acount() == 0
        await browser.close()
