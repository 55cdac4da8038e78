from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import Dialog, async_playwright, expect

from analytics.models import RequestLog
from tests.analytics.conftest import DAY1, DAY2, log_build
from tests.analytics.test_demo_data import _demo_copies
from tests.e2e.test_analytics import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_the_demo_banner_hides_and_deletes_demo_data(live_server_url: str) -> None:
    await sync_to_async(log_build)()
    await sync_to_async(_demo_copies)()
    await sync_to_async(User.objects.create_user)(
        "lena", password="correct horse battery", is_staff=True
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{live_server_url}/accounts/login/")
        await page.fill("#id_username", "lena")
        await page.fill("#id_password", "correct horse battery")
        await page.click("button[type=submit]")

        await page.goto(f"{live_server_url}/?start={DAY1}&end={DAY2}")
        banner = page.locator("[data-demo-banner]")
        await expect(banner).to_contain_text("This range includes 2 synthetic demo requests")
        await expect(page.locator("[data-kpi=requests]")).to_have_text("9")

        await page.get_by_role("link", name="Hide demo data").click()
        await expect(page.locator("[data-kpi=requests]")).to_have_text("7")
        await expect(banner).to_contain_text("2 synthetic demo requests in this range are hidden")
        # The filter form keeps the choice.
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator("[data-kpi=requests]")).to_have_text("7")

        dialogs: list[str] = []

        async def accept(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        await page.get_by_role("button", name="Delete demo data").click()
        await expect(page.locator(".flash")).to_contain_text("Deleted 2 demo requests")
        await page.goto(f"{live_server_url}/?start={DAY1}&end={DAY2}")
        await expect(page.locator("[data-kpi=requests]")).to_have_text("7")
        await expect(banner).to_have_count(0)
        assert dialogs == ["Delete all demo data? Real requests are kept."]
        await browser.close()
    assert await sync_to_async(RequestLog.objects.filter(is_demo=True).count)() == 0
