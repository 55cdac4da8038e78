"""The telemetry traffic chart in real Chromium: requests/s and tokens/s on axes of their own,
and the last 15 minutes drawn from the moment the page opens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.async_api import async_playwright, expect

from analytics.models import RequestLog
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TRAFFIC = """
() => {
  const el = document.getElementById("chart-traffic");
  const traces = el._fullData.map((t) => [t.name, t.yaxis]);
  const tokens = el._fullData.find((t) => t.name === "tokens/s");
  const busiest = tokens.x[tokens.y.indexOf(Math.max(...tokens.y))];
  return {
    traces,
    first: el._fullData[0].x[0],
    busiest,
    y2: el._fullLayout.yaxis2 ? el._fullLayout.yaxis2.side : null,
    titles: [...el.querySelectorAll(".g-ytitle text, .g-y2title text")].map((t) => t.textContent),
  };
}
"""


def _ten_minutes_ago() -> None:
    at = timezone.now() - timedelta(minutes=10)
    RequestLog.objects.bulk_create(
        RequestLog(
            created_at=at,
            entry_point="openai",
            status="success",
            cost_state="reported",
            latency_ms=400,
            output_tokens=600,
        )
        for _ in range(3)
    )


async def test_traffic_chart_has_two_axes_and_starts_15_minutes_back(
    live_server_url: str,
) -> None:
    await database_sync_to_async(_ten_minutes_ago)()
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
        await expect(page.locator("#chart-traffic .main-svg").first).to_be_attached()

        chart: dict[str, Any] = await page.evaluate(TRAFFIC)
        opened = timezone.now()

        assert chart["traces"] == [
            ["requests/s", "y"],
            ["tokens/s", "y2"],
            ["active streams", "y"],
        ]
        assert chart["y2"] == "right"
        assert sorted(chart["titles"]) == ["requests/s · streams", "tokens/s"]
        # Drawn at once from the rebuilt history: 15 minutes back, the burst 10 minutes ago.
        # The points' times are ISO strings with their UTC offset, kept as sent.
        first = datetime.fromisoformat(chart["first"])
        busiest = datetime.fromisoformat(chart["busiest"])
        assert timedelta(minutes=14) < opened - first < timedelta(minutes=16)
        assert timedelta(minutes=9) < opened - busiest < timedelta(minutes=11, seconds=30)
        await browser.close()
