"""Chart specs: one colour per model everywhere, axes that make room for their labels, and
hourly points for short ranges."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from analytics.charts import (
    PALETTE,
    cost_by_model_chart,
    latency_chart,
    model_colours,
    model_distribution_chart,
    savings_chart,
    task_type_chart,
)
from analytics.filters import ReportFilter
from analytics.selectors import (
    report_breakdown,
    report_by_day,
    report_by_hour_points,
    report_cost_by_model_hour,
)
from tests.analytics.conftest import DAY1, DAY2, Log

ONE_DAY = ReportFilter(start=DAY1, end=DAY1)


def test_model_colours_are_stable_and_distinct() -> None:
    names = ["gpt-4o", "gpt-4o-mini", "smol", "mystery", "(none)"]

    colours = model_colours(names)

    assert colours == model_colours(list(reversed(names)))
    assert len(set(colours.values())) == len(names)
    assert set(colours.values()) <= set(PALETTE)
    # A model keeps its colour when others come and go, unless a newcomer takes its slot.
    assert model_colours(["gpt-4o"])["gpt-4o"] == model_colours(["gpt-4o", "zzz"])["gpt-4o"]


@pytest.mark.django_db
def test_every_chart_gives_a_model_the_same_colour(log: Log) -> None:
    both = ReportFilter(start=DAY1, end=DAY2)
    by_model = report_breakdown(both, "model_name")
    colours = model_colours(r.key for r in by_model)

    cost = cost_by_model_chart(report_cost_by_model_hour(both), colours)
    pies = model_distribution_chart(by_model, colours)
    latency = latency_chart(by_model, colours)

    bar_colour = {trace["name"]: trace["marker"]["color"] for trace in cost["data"]}
    for pie in pies["data"]:
        assert dict(zip(pie["labels"], pie["marker"]["colors"], strict=True)) == colours
    for trace in latency["data"]:
        assert dict(zip(trace["x"], trace["marker"]["color"], strict=True)) == colours
    assert bar_colour == {name: colours[name] for name in bar_colour}
    assert set(bar_colour) == {"gpt-4o", "gpt-4o-mini", "mystery", "smol"}


@pytest.mark.django_db
def test_axes_have_titles_and_automargin(log: Log) -> None:
    both = ReportFilter(start=DAY1, end=DAY2)
    by_model = report_breakdown(both, "model_name")
    specs = [
        cost_by_model_chart(report_cost_by_model_hour(both)),
        savings_chart(report_by_day(both)),
        latency_chart(by_model),
        task_type_chart(report_breakdown(both, "task_type")),
    ]

    for spec in specs:
        for axis in ("xaxis", "yaxis"):
            assert spec["layout"][axis]["automargin"] is True
            assert spec["layout"][axis]["title"]["text"]


@pytest.mark.django_db
def test_one_day_is_drawn_hour_by_hour(log: Log) -> None:
    points = report_by_hour_points(ONE_DAY)
    cost = cost_by_model_chart(report_cost_by_model_hour(ONE_DAY))
    savings = savings_chart(points)

    hours = [f"{DAY1} {h:02d}:00" for h in range(24)]
    assert [trace["x"] for trace in savings["data"]] == [hours, hours]
    # 09:00 premium at $0.0075 (baseline the same); 10:00 mini at $0.0009 against $0.015.
    actual = dict(zip(hours, savings["data"][0]["y"], strict=True))
    baseline = dict(zip(hours, savings["data"][1]["y"], strict=True))
    assert (actual[f"{DAY1} 09:00"], baseline[f"{DAY1} 09:00"]) == ("0.0075", "0.0075")
    assert (actual[f"{DAY1} 10:00"], baseline[f"{DAY1} 10:00"]) == ("0.0009", "0.0150")
    assert actual[f"{DAY1} 00:00"] == "0.0000"
    assert savings["layout"]["xaxis"]["title"]["text"] == "hour"
    gpt4o = next(t for t in cost["data"] if t["name"] == "gpt-4o")
    assert gpt4o["x"] == hours
    assert dict(zip(hours, gpt4o["y"], strict=True))[f"{DAY1} 09:00"] == "0.0075"
    assert sum(Decimal(y) for y in gpt4o["y"]) == Decimal("0.0075")
    assert cost["layout"]["title"]["text"] == "Cost per hour by model (USD)"


def _chart_specs(page: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="chart-specs" type="application/json">(.*?)</script>', page, re.S
    )
    assert found is not None
    specs: dict[str, Any] = json.loads(found.group(1))
    return specs


@pytest.mark.django_db
def test_dashboard_uses_hours_for_short_ranges_and_days_beyond(log: Log) -> None:
    client = Client()
    client.force_login(log.staff)

    short = _chart_specs(client.get(f"/?start={DAY1}&end={DAY2}").content.decode())
    week = _chart_specs(
        client.get(f"/?start={DAY1}&end={DAY1 + timedelta(days=6)}").content.decode()
    )

    assert len(short["savings"]["data"][0]["x"]) == 48
    assert short["savings"]["data"][0]["x"][0] == f"{DAY1} 00:00"
    assert week["savings"]["data"][0]["x"] == [
        (DAY1 + timedelta(days=n)).isoformat() for n in range(7)
    ]
    bars = {t["name"]: t["marker"]["color"] for t in short["cost-by-model"]["data"]}
    (pie, _) = short["model-distribution"]["data"]
    assert dict(zip(pie["labels"], pie["marker"]["colors"], strict=True)) == bars
