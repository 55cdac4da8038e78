"""Every page under the site's Content-Security-Policy in real Chromium: no violation on the
dashboard, reports, routing, API docs, telemetry, chat and admin pages, plotly charts drawn and the
websocket connected."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect

from tests.analytics.conftest import DAY1, DAY2, log_build
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery"
# Reported through the console, where a test can read it, besides Chromium's own message.
VIOLATION_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  console.error(`csp-violation ${e.violatedDirective} ${e.blockedURI} ${where}`);
});
"""


async def visit(page: Page, url: str) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    policy = await response.header_value("content-security-policy")
    assert policy is not None and "script-src 'self';" in policy, url
    assert "frame-ancestors 'none'" in policy
    assert await response.header_value("x-content-type-options") == "nosniff"
    assert await response.header_value("referrer-policy") == "same-origin"


async def test_no_page_breaks_the_content_security_policy(live_server_url: str) -> None:
    await sync_to_async(log_build)()
    await sync_to_async(User.objects.create_superuser)("lena", password=PASSWORD)
    base = live_server_url
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "csp-violation" in message.text or "Content Security Policy" in message.text:
            violations.append(message.text)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.add_init_script(VIOLATION_LISTENER)
        page.on("console", on_console)

        await visit(page, f"{base}/accounts/login/")
        await page.fill("#id_username", "lena")
        await page.fill("#id_password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("[data-kpi=requests]")).to_be_visible()

        await visit(page, f"{base}/?start={DAY1}&end={DAY2}")
        for chart in ("cost-by-model", "savings", "model-distribution"):
            await expect(page.locator(f'[data-chart="{chart}"]')).to_have_attribute(
                "data-rendered", "true"
            )
        await expect(page.locator('[data-chart="cost-by-model"] .main-svg').first).to_be_visible()

        await visit(page, f"{base}/reports/?start={DAY1}&end={DAY2}")
        await expect(page.locator("[data-chart][data-rendered=true]").first).to_be_visible()

        await visit(page, f"{base}/routing/")
        await visit(page, f"{base}/api/docs")
        await expect(page.locator("#swagger-ui .opblock").first).to_be_visible()
        await visit(page, f"{base}/routing/telemetry/")
        await expect(page.locator("#ws-state")).to_have_text("connected")

        await visit(page, f"{base}/chat/")
        await expect(page.locator("#ws-state")).to_have_text("connected")

        for path in ("/admin/", "/admin/auth/user/", "/admin/auth/user/add/"):
            await visit(page, f"{base}{path}")
        await expect(page.locator("#id_username")).to_be_visible()

        assert violations == []

        # The listener does see a violation: an inline script is refused and reported.
        await page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.ran = true'; document.body.append(s); }"
        )
        reported = [text for text in violations if text.startswith("csp-violation")]
        for _ in range(50):
            if reported:
                break
            await asyncio.sleep(0.1)
            reported = [text for text in violations if text.startswith("csp-violation")]
        assert reported and reported[0].startswith("csp-violation script-src-elem inline")
        assert await page.evaluate("() => window.ran === undefined")
        await browser.close()
