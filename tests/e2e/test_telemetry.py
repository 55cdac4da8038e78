"""The telemetry page in real Chromium: live numbers and charts over the websocket."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.async_api import async_playwright, expect

from analytics.models import RequestLog
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _traffic(count: int) -> None:
    now = timezone.now()
    RequestLog.objects.bulk_create(
        RequestLog(
            created_at=now - timedelta(seconds=2),
            entry_point="chat",
            status="success",
            cost_state="reported",
            latency_ms=250,
            output_tokens=60,
        )
        for _ in range(count)
    )


async def test_telemetry_numbers_change_on_screen(live_server_url: str) -> None:
    await database_sync_to_async(get_user_model().objects.create_user)(
        "tom", password="correct horse battery"
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{live_server_url}/accounts/login/?next=/routing/telemetry/")
        await page.fill("#id_username", "tom")
        await page.fill("#id_password", "correct horse battery")
        await page.click("button[type=submit]")

        await expect(page.locator("#ws-state")).to_have_text("connected")
        await expect(page.locator("#t-rps")).to_have_text("0.00", timeout=10_000)
        first_at = await page.locator("#t-at").text_content()
        await expect(page.locator("#t-at")).not_to_have_text(first_at or "", timeout=10_000)
        await expect(page.locator("#t-cpu")).to_have_text(re.compile(r"^\d+\.\d %$"))
        await expect(page.locator("#chart-machine .main-svg").first).to_be_attached()

        await database_sync_to_async(_traffic)(6)

        # 6 requests in the one-minute window: 0.1 a second, 6 x 60 tokens over 60 s.
        await expect(page.locator("#t-rps")).to_have_text("0.10", timeout=10_000)
        await expect(page.locator("#t-tps")).to_have_text("6.0")
        await expect(page.locator("#t-latency")).to_have_text("250 / 250 ms")
        await expect(page.locator("#t-errors")).to_have_text("0.0 %")
        await browser.close()
