from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import Page, async_playwright, expect

from routing.router.store import SHIPPED
from tests.analytics.conftest import DAY1, DAY2, log_build
from tests.analytics.test_quality import scored_rows_build
from tests.e2e.test_analytics import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POINTS_JS = "el => el.data.map(trace => trace.x.length)"


async def curve_drawn(page: Page) -> list[int]:
    """Waits for the plotly drawing of the curve and returns its traces' point counts."""
    chart = page.locator('[data-chart="router-curve"]')
    await expect(chart).to_have_attribute("data-rendered", "true")
    await expect(chart.locator("svg.main-svg").first).to_be_visible()
    await expect(chart.locator(".gtitle")).to_have_text("Cost-quality curve")
    counts: list[int] = await chart.evaluate(POINTS_JS)
    return counts


async def test_quality_kept_and_the_cost_quality_curve(live_server_url: str) -> None:
    log = await sync_to_async(log_build)()
    await sync_to_async(scored_rows_build)(log)
    await sync_to_async(User.objects.create_user)(
        "lena", password="correct horse battery", is_staff=True
    )
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{live_server_url}/accounts/login/")
        await page.fill("#id_username", "lena")
        await page.fill("#id_password", "correct horse battery")
        await page.click("button[type=submit]")

        await page.goto(f"{live_server_url}/reports/?start={DAY1}&end={DAY2}")
        await expect(page.locator("[data-kpi=quality-kept]")).to_have_text("80.00 %")
        await expect(page.locator("[data-kpi=quality-scored]")).to_have_text(
            "3 requests scored by the router"
        )
        # The curve, then the default policy's operating point (one marker).
        assert await curve_drawn(page) == [len(shipped["curve"]), 1]

        # A day without scored requests: a dash, never 100 %.
        await page.goto(f"{live_server_url}/reports/?start={DAY2}&end={DAY2}")
        await expect(page.locator("[data-kpi=quality-kept]")).to_have_text("—")

        await page.goto(f"{live_server_url}/routing/")
        await expect(page.locator("[data-router=version]")).to_have_text(shipped["version"])
        await expect(page.locator("[data-router=sha256] code")).to_have_attribute(
            "title", shipped["data_sha256"]
        )
        assert await curve_drawn(page) == [len(shipped["curve"]), 1]
        benchmarks = sorted(shipped["evaluation"]["out_of_fold"])
        await expect(page.locator("[data-router=out-of-fold] tbody tr")).to_have_count(
            len(benchmarks)
        )
        await browser.close()
