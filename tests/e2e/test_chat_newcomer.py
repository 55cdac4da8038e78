"""The chat page as a newcomer meets it, in real Chromium against the web process: a waiting
state before the first token, a live sidebar, a readable "why this model", honest costs,
comparing with one model, and icons that need no emoji font."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import Page, async_playwright, expect

from providers.models import LLMModel, Provider
from routing.engine.taxonomy import TASK_TYPES
from routing.models import RoutingPolicy, RoutingRule
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS
from tests.providers.conftest import upstream, upstream_server  # noqa: F401
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery"
LOCAL_PATH = "/tiny/v1/chat/completions"
CLOUD_PATH = "/cloud/v1/chat/completions"
BAD_RED = "rgb(180, 35, 24)"


def _registry(server: UpstreamServer, *, with_cloud: bool = False) -> None:
    """A fresh install: one local model (served by the fake upstream) and one policy."""
    local = Provider.objects.create(
        name="local", kind="openai_compatible", base_url=f"{server.url}/tiny/v1", locality="local"
    )
    tiny = LLMModel.objects.create(
        provider=local,
        name="tiny",
        tier="small_local",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    if with_cloud:
        cloud = Provider.objects.create(
            name="cloud", kind="openai_compatible", base_url=f"{server.url}/cloud/v1"
        )
        LLMModel.objects.create(
            provider=cloud,
            name="big",
            tier="standard",
            input_price_per_mtok_usd=Decimal("1"),
            output_price_per_mtok_usd=Decimal("2"),
        )
    policy = RoutingPolicy.objects.create(name="e2e-one", is_default=True)
    for task_type in TASK_TYPES:
        RoutingRule.objects.create(policy=policy, task_type=task_type, primary=tiny, tiers=[])
    get_user_model().objects.create_user("maria", password=PASSWORD)


@asynccontextmanager
async def _chat_page(base: str) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{base}/accounts/login/?next=/chat/")
        await page.fill("#id_username", "maria")
        await page.fill("#id_password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("#ws-state")).to_have_text("connected")
        try:
            yield page
        finally:
            await browser.close()


async def _ask(page: Page, prompt: str) -> None:
    await page.fill("#prompt", prompt)
    await page.press("#prompt", "Enter")


async def test_a_waiting_state_shows_until_the_first_token_and_ends_on_stop_and_error(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    upstream.reply(
        "POST",
        LOCAL_PATH,
        # Long enough that "2 s" shows for over a second even when the page's clock starts late.
        Reply.sse(openai_sse(["Blue ", "sky"], usage=None)).but(delay_s=3.6),
        Reply.sse(openai_sse(["never"], usage=None)).but(delay_s=8),
        Reply.json({"error": {"message": "bad request"}}, status=400).but(delay_s=1.2),
    )
    async with _chat_page(live_server_url) as page:
        # 1. From send to the first token: the model awaited, a spinner and the seconds.
        await _ask(page, "What colour is the sky?")
        answer = page.locator(".msg.assistant").nth(0)
        waiting = answer.locator(".waiting")
        await expect(waiting).to_be_visible()
        await expect(waiting.locator(".waiting-label")).to_have_text("Waiting for local:tiny…")
        await expect(waiting.locator(".spinner")).to_be_visible()
        await expect(waiting.locator(".waiting-elapsed")).to_have_text("2 s")
        await expect(answer.locator(".body")).to_have_text("Blue sky")
        await expect(waiting).to_have_count(0)

        # 2. Stopped while waiting: the indicator goes at once.
        await _ask(page, "Wait for ever")
        stopped = page.locator(".msg.assistant").nth(1)
        await expect(stopped.locator(".waiting")).to_be_visible()
        await page.click("#stop")
        await expect(stopped.locator(".waiting")).to_have_count(0)
        await expect(stopped.locator(".meta .error")).to_have_text("Stopped.")

        # 3. An error ends the wait too.
        await _ask(page, "Fail please")
        failed = page.locator(".msg.assistant").nth(2)
        await expect(failed.locator(".waiting")).to_be_visible()
        await expect(failed.locator(".meta .error")).to_contain_text("Failed:")
        await expect(failed.locator(".waiting")).to_have_count(0)


async def test_a_new_conversation_joins_the_sidebar_without_a_reload(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    upstream.reply("POST", LOCAL_PATH, Reply.sse(openai_sse(["Hello"], usage=None)))
    async with _chat_page(live_server_url) as page:
        await expect(page.locator("#conversations")).to_have_text("No conversations yet.")
        await page.evaluate("window.sameDocument = true")

        await _ask(page, "Plan a trip to Lisbon")

        current = page.locator("#conversations li[aria-current=true] a")
        await expect(current).to_have_text("Plan a trip to Lisbon")
        conversation_url = re.compile(r"/chat/\d+/$")
        await expect(page).to_have_url(conversation_url)
        href = await current.get_attribute("href")
        assert href is not None and href == page.url.removeprefix(live_server_url)
        await expect(page.locator("#conversations li")).to_have_count(1)
        assert await page.evaluate("window.sameDocument") is True


async def test_why_this_model_reads_as_a_list_with_the_raw_trace_folded_away(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    upstream.reply("POST", LOCAL_PATH, Reply.sse(openai_sse(["Fine"], usage=None)))
    async with _chat_page(live_server_url) as page:
        await _ask(page, "How are you?")
        answer = page.locator(".msg.assistant").first
        await expect(answer.locator(".badge .model")).to_have_text("local:tiny")

        why = answer.locator("details.why")
        await why.locator(":scope > summary").click()
        facts = why.locator("dl.why-facts")
        await expect(facts.locator("dt")).to_have_text(
            ["Model", "Policy", "Task", "Why", "Router version", "Rung", "Rule", "Fallbacks",
             "Guards"]
        )  # fmt: skip
        values = facts.locator("dd")
        await expect(values.nth(0)).to_have_text("local:tiny")
        await expect(values.nth(1)).to_have_text("e2e-one")
        await expect(values.nth(3)).to_have_text(
            re.compile(
                r"^the learned router gives a \d+ % chance that a premium model is needed, "
                r"(at or above|below) the policy's threshold of \d+ %$"
            )
        )
        await expect(values.nth(5)).to_have_text(re.compile(r"^\d of \d \(\w+\)"))
        await expect(values.nth(7)).to_have_text("none")
        await expect(values.nth(8)).to_have_text("none applied")
        raw = why.locator("details.why-raw")
        await expect(raw).not_to_have_attribute("open", "")
        await expect(raw.locator("pre")).to_be_hidden()
        await raw.locator("summary").click()
        await expect(raw.locator("pre")).to_be_visible()
        await expect(raw.locator("pre")).to_contain_text('"policy": "e2e-one"')


async def test_a_local_answer_is_free_and_a_cloud_answer_keeps_its_cost(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(lambda: _registry(upstream, with_cloud=True))()
    upstream.reply("POST", LOCAL_PATH, Reply.sse(openai_sse(["Local"], usage=None)))
    upstream.reply("POST", CLOUD_PATH, Reply.sse(openai_sse(["Cloud"], usage=(1000, 200))))
    async with _chat_page(live_server_url) as page:
        await _ask(page, "Say something")
        local = page.locator(".msg.assistant").nth(0).locator(".badge .cost")
        await expect(local).to_have_text("free (local)")
        assert await local.evaluate("e => getComputedStyle(e).color") != BAD_RED

        await page.select_option("#model", "cloud:big")
        await _ask(page, "Say something else")
        # 1000 x $1 / 1M + 200 x $2 / 1M
        cloud = page.locator(".msg.assistant").nth(1).locator(".badge .cost")
        await expect(cloud).to_have_text("$0.001400")

        await page.reload()
        await expect(page.locator(".msg.assistant .badge .cost")).to_have_text(
            ["free (local)", "$0.001400"]
        )


async def test_one_model_is_compared_at_two_temperatures_and_the_warning_clears(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    upstream.reply("POST", LOCAL_PATH, Reply.sse(openai_sse(["Same"], usage=None)))
    async with _chat_page(live_server_url) as page:
        await page.get_by_text("Compare models").click()
        await expect(page.locator(".compare .hint")).to_contain_text(
            "With one model enabled, compare two policies, or the model at two temperatures"
        )
        # One ticked choice is refused with a warning.
        await page.locator("input[name=compare][value='local:tiny']").check()
        await _ask(page, "Tell me a joke")
        warning = page.locator("#composer-warning")
        await expect(warning).to_have_text("Tick at least two models to compare, or none.")

        await page.locator("input[name=compare][value='local:tiny']").uncheck()
        await page.select_option("#model", "local:tiny")
        await page.locator("#compare-temperatures").check()
        await page.fill("#temperature-a", "0.3")
        await page.fill("#temperature-b", "1.2")
        await page.press("#prompt", "Enter")

        answers = page.locator(".compare-row .msg.assistant")
        await expect(answers).to_have_count(2)
        await expect(answers.locator(".badge .temperature")).to_have_text(
            ["temperature 0.3", "temperature 1.2"]
        )
        await expect(warning).to_be_hidden()
        await expect(warning).to_have_text("")
        sent = sorted(r.json()["temperature"] for r in upstream.requests if r.path == LOCAL_PATH)
        assert sent == [0.3, 1.2]


async def test_feedback_buttons_are_svg_icons_with_accessible_names(
    live_server_url: str,
    upstream: UpstreamServer,  # noqa: F811
) -> None:
    await database_sync_to_async(_registry)(upstream)
    upstream.reply("POST", LOCAL_PATH, Reply.sse(openai_sse(["Thanks"], usage=None)))
    async with _chat_page(live_server_url) as page:
        await _ask(page, "Hello")
        answer = page.locator(".msg.assistant").first
        for name in ("Good answer", "Bad answer"):
            button = answer.get_by_role("button", name=name, exact=True)
            await expect(button).to_have_count(1)
            await expect(button.locator("svg")).to_have_count(1)
            box = await button.bounding_box()
            icon_box = await button.locator("svg").bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0
            assert icon_box is not None and icon_box["width"] >= 12 and icon_box["height"] >= 12
            assert (await button.inner_text()).strip() == ""
        await answer.get_by_role("button", name="Good answer").click()
        await expect(answer.get_by_role("button", name="Good answer")).to_have_attribute(
            "aria-pressed", "true"
        )
