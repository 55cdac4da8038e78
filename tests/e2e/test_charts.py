"""The dashboard's charts in real Chromium: a model has one colour in every chart, and no axis
title or tick label is cut off by the plot's edge."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import Page, async_playwright, expect

from tests.analytics.conftest import DAY1, DAY2, log_build
from tests.e2e.test_login import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The colour each model is drawn in: bars of the cost chart, slices of the distribution pies.
RENDERED_COLOURS = """
() => {
  const fill = (el) => getComputedStyle(el).fill;
  const bars = {};
  document.querySelectorAll('[data-chart="cost-by-model"] g.trace.bars').forEach((g) => {
    const path = g.querySelector("g.point path");
    if (path) bars[g.__data__[0].trace.name] = fill(path);
  });
  const slices = [];
  document.querySelectorAll('[data-chart="model-distribution"] g.slice').forEach((g) => {
    slices.push([g.__data__.label, fill(g.querySelector("path.surface"))]);
  });
  return {bars, slices};
}
"""

# Every axis title and tick label whose box sticks out of its chart's svg.
CLIPPED_LABELS = """
(chart) => {
  const el = document.querySelector(`[data-chart="${chart}"]`);
  const svg = el.querySelector("svg.main-svg").getBoundingClientRect();
  const labels = el.querySelectorAll(".g-xtitle text, .g-ytitle text, .xtick text, .ytick text");
  const clipped = [];
  labels.forEach((t) => {
    const box = t.getBoundingClientRect();
    if (box.width === 0) return;
    if (box.left < svg.left - 0.5 || box.right > svg.right + 0.5 ||
        box.top < svg.top - 0.5 || box.bottom > svg.bottom + 0.5) clipped.push(t.textContent);
  });
  return {
    titles: el.querySelectorAll(".g-xtitle text, .g-ytitle text").length,
    clipped,
  };
}
"""


async def _login(page: Page, url: str) -> None:
    await page.goto(f"{url}/accounts/login/")
    await page.fill("#id_username", "lena")
    await page.fill("#id_password", "correct horse battery")
    await page.click("button[type=submit]")


async def test_models_keep_one_colour_and_axis_labels_fit(live_server_url: str) -> None:
    await sync_to_async(log_build)()
    await sync_to_async(User.objects.create_user)(
        "lena", password="correct horse battery", is_staff=True
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Narrow, as on a laptop beside another window: where fixed margins clipped labels.
        page = await browser.new_page(viewport={"width": 900, "height": 900})
        await _login(page, live_server_url)

        await page.goto(f"{live_server_url}/?start={DAY1}&end={DAY2}")
        for chart in ("cost-by-model", "savings", "model-distribution"):
            await expect(page.locator(f'[data-chart="{chart}"]')).to_have_attribute(
                "data-rendered", "true"
            )
        colours: dict[str, Any] = await page.evaluate(RENDERED_COLOURS)

        bars = colours["bars"]
        assert set(bars) == {"gpt-4o", "gpt-4o-mini", "mystery", "smol"}
        assert len(set(bars.values())) == 4
        slices = colours["slices"]
        # Two pies (requests, cost); a slice of zero cost is not drawn.
        assert len(slices) >= 6
        for label, fill in slices:
            assert fill == bars[label], label

        for chart in ("cost-by-model", "savings"):
            labels = await page.evaluate(CLIPPED_LABELS, chart)
            assert labels == {"titles": 2, "clipped": []}, chart

        await page.goto(f"{live_server_url}/reports/?start={DAY1}&end={DAY2}")
        await expect(page.locator('[data-chart="latency"]')).to_have_attribute(
            "data-rendered", "true"
        )
        for chart in ("latency", "task-types"):
            labels = await page.evaluate(CLIPPED_LABELS, chart)
            assert labels == {"titles": 2, "clipped": []}, chart
        latency_fills = await page.evaluate(
            """() => [...document.querySelectorAll('[data-chart="latency"] g.trace.bars')]
                 .pop().querySelectorAll("g.point path").length"""
        )
        assert latency_fills == 4
        await browser.close()
