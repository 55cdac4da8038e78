"""The compare view's choice in real Chromium: two models answer side by side, the user prefers
one, and the votes land in the request log's feedback (and survive a reload)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import Locator, Page, async_playwright, expect

from analytics.models import RequestFeedback
from chat.models import Message
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS
from tests.providers.conftest import upstream, upstream_server  # noqa: F401
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import every_task_to, upstream_models
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery"


def _registry(server: UpstreamServer) -> None:
    models = upstream_models(server)
    every_task_to("e2e-compare", models["alpha"], models["beta"])
    get_user_model().objects.create_user("maria", password=PASSWORD)


def _votes() -> dict[str, bool]:
    """model_ref → thumbs, for every recorded vote."""
    refs = dict(
        Message.objects.filter(request_id__isnull=False).values_list("request_id", "model_ref")
    )
    return {
        refs[rid]: positive
        for rid, positive in RequestFeedback.objects.values_list("request__request_id", "positive")
    }


def _answer(page: Page, text: str) -> Locator:
    return page.locator(".compare-row .msg.assistant").filter(has_text=text)


async def _expect_preferred(chosen: Locator, other: Locator) -> None:
    await expect(chosen.get_by_role("button", name="Prefer this answer")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(chosen.get_by_text("Preferred answer", exact=True)).to_be_visible()
    await expect(chosen.locator(".preferred-mark svg")).to_have_count(1)
    await expect(chosen.get_by_role("button", name="Good answer")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(other.get_by_role("button", name="Prefer this answer")).to_have_attribute(
        "aria-pressed", "false"
    )
    await expect(other.get_by_text("Preferred answer", exact=True)).to_be_hidden()
    await expect(other.get_by_role("button", name="Bad answer")).to_have_attribute(
        "aria-pressed", "true"
    )


async def test_prefer_one_answer_of_a_comparison(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    upstream.reply("POST", "/alpha/v1/chat/completions", Reply.sse(openai_sse(["Alpha ", "says"])))
    upstream.reply("POST", "/beta/v1/chat/completions", Reply.sse(openai_sse(["Beta ", "says"])))

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{live_server_url}/accounts/login/?next=/chat/")
        await page.fill("#id_username", "maria")
        await page.fill("#id_password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("#ws-state")).to_have_text("connected")

        # 1. Two models answer side by side; the choice is offered once both have finished.
        await page.get_by_text("Compare models").click()
        await page.locator("input[name=compare][value='alpha:alpha-model']").check()
        await page.locator("input[name=compare][value='beta:beta-model']").check()
        await page.fill("#prompt", "Which of you is better?")
        await page.press("#prompt", "Enter")
        alpha, beta = _answer(page, "Alpha says"), _answer(page, "Beta says")
        await expect(alpha.locator(".badge .model")).to_have_text("alpha:alpha-model")
        await expect(beta.locator(".badge .model")).to_have_text("beta:beta-model")
        await expect(page.get_by_role("button", name="Prefer this answer")).to_have_count(2)
        assert await database_sync_to_async(_votes)() == {}

        # 2. Preferring beta: thumbs up on beta's request, thumbs down on alpha's.
        await beta.get_by_role("button", name="Prefer this answer").click()
        await _expect_preferred(beta, alpha)
        assert await database_sync_to_async(_votes)() == {
            "alpha:alpha-model": False,
            "beta:beta-model": True,
        }

        # 3. The choice is shown again after a reload, from the stored votes.
        await page.reload()
        alpha, beta = _answer(page, "Alpha says"), _answer(page, "Beta says")
        await _expect_preferred(beta, alpha)

        # 4. Choosing again moves the votes.
        await alpha.get_by_role("button", name="Prefer this answer").click()
        await _expect_preferred(alpha, beta)
        assert await database_sync_to_async(_votes)() == {
            "alpha:alpha-model": True,
            "beta:beta-model": False,
        }
        await browser.close()
