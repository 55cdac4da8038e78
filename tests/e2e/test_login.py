from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from playwright.async_api import async_playwright, expect

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


async def test_login_shows_navigation_and_logout(live_server_url: str) -> None:
    await database_sync_to_async(get_user_model().objects.create_user)(
        "maria", password="correct horse battery", is_staff=True
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()

        await page.goto(f"{live_server_url}/")
        await expect(page).to_have_url(f"{live_server_url}/accounts/login/?next=/")
        await page.fill("#id_username", "maria")
        await page.fill("#id_password", "wrong")
        await page.click("button[type=submit]")
        await expect(page.locator(".flash-error")).to_contain_text("didn't match")
        await page.fill("#id_username", "maria")
        await page.fill("#id_password", "correct horse battery")
        await page.click("button[type=submit]")

        nav = page.get_by_role("navigation", name="Main")
        await expect(nav.get_by_role("link")).to_have_text(
            ["Dashboard", "Chat", "Models", "Routing", "Reports", "Telemetry", "Admin"]
        )
        await expect(nav.get_by_role("link", name="Dashboard")).to_have_attribute(
            "aria-current", "page"
        )
        await nav.get_by_role("link", name="Telemetry").click()
        await expect(page.locator("#ws-state")).to_have_text("connected")
        await page.get_by_role("button", name="Log out").click()
        await expect(page).to_have_url(f"{live_server_url}/accounts/login/")
        await browser.close()
