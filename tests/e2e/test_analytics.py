from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import async_playwright, expect

from tests.analytics.conftest import DAY1, DAY2, log_build

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_dashboard_charts_filters_and_csv_download(live_server_url: str) -> None:
    await sync_to_async(log_build)()
    await sync_to_async(User.objects.create_user)(
        "lena", password="correct horse battery", is_staff=True
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(accept_downloads=True)
        await page.goto(f"{live_server_url}/accounts/login/")
        await page.fill("#id_username", "lena")
        await page.fill("#id_password", "correct horse battery")
        await page.click("button[type=submit]")

        await page.goto(f"{live_server_url}/?start={DAY1}&end={DAY2}")
        await expect(page.locator("[data-kpi=requests]")).to_have_text("7")
        await expect(page.locator("[data-kpi=cost]")).to_have_text("$0.01")
        for chart in ("cost-by-model", "savings", "model-distribution"):
            await expect(page.locator(f'[data-chart="{chart}"]')).to_have_attribute(
                "data-rendered", "true"
            )
        await expect(page.locator('[data-chart="cost-by-model"] .main-svg').first).to_be_visible()

        await page.select_option("#f-model", "gpt-4o-mini")
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator("[data-kpi=requests]")).to_have_text("3")
        await expect(page).to_have_url(
            f"{live_server_url}/?preset=&start={DAY1}&end={DAY2}&model_name=gpt-4o-mini"
            "&provider_name=&locality=&task_type=&status=&project=&tag=&end_user=&user_id=&api_key_id="
        )

        await page.goto(f"{live_server_url}/reports/?start={DAY1}&end={DAY2}&locality=cloud")
        await expect(page.locator("[data-kpi=requests]")).to_have_text("6")
        async with page.expect_download() as download_info:
            await page.click("#csv-raw")
        download = await download_info.value
        path = await download.path()
        text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        assert download.suggested_filename == f"requests-raw-{DAY1}-{DAY2}.csv"
        assert rows[0][:3] == ["request_id", "created_at", "entry_point"]
        assert len(rows) == 7
        assert {r[10] for r in rows[1:]} == {"cloud"}

        await page.get_by_role("button", name="Export in background").click()
        await expect(page.locator("#export-progress .pct")).to_have_text("100 %")
        await expect(page.locator("#export-progress progress")).to_have_js_property("value", 100)
        async with page.expect_download() as job_download_info:
            await page.locator("#export-progress .download").click()
        job_download = await job_download_info.value
        job_text = await asyncio.to_thread(
            Path(await job_download.path()).read_text, encoding="utf-8"
        )
        assert list(csv.reader(io.StringIO(job_text))) == rows
        await browser.close()
