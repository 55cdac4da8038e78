"""The API docs page works offline: Swagger UI comes from the site's own static files."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.async_api import Route, async_playwright, expect

from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_api_docs_render_operations_with_no_network(live_server_url: str) -> None:
    refused: list[str] = []

    async def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.route("**/*", local_only)

        await page.goto(f"{live_server_url}/api/docs")

        operations = page.locator("#swagger-ui .opblock")
        await expect(operations.first).to_be_visible(timeout=10_000)
        await expect(
            page.locator("#swagger-ui .opblock-summary-path", has_text="/api/execute")
        ).to_be_visible()
        assert await operations.count() >= 3
        assert refused == []
        await browser.close()
