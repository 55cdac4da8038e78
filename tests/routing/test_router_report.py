"""The router's cost-quality curve as the report pages read it (routing/router/report.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from analytics.router_report import router_curve
from routing.models import RoutingPolicy
from routing.router.report import router_curve_read
from routing.router.store import SHIPPED, router_forget

pytestmark = pytest.mark.django_db

SMALL_CURVE = [
    {"threshold": 1.0, "premium_share": 0.0, "quality_kept_pct": 80.0},
    {"threshold": 0.5, "premium_share": 0.25, "quality_kept_pct": 90.0},
    {"threshold": 0.3, "premium_share": 0.5, "quality_kept_pct": 96.0},
    {"threshold": 0.1, "premium_share": 1.0, "quality_kept_pct": 100.0},
]


@pytest.fixture(autouse=True)
def _fresh_router() -> Iterator[None]:
    router_forget()
    yield
    router_forget()


@pytest.fixture
def small_router(tmp_path: Path, settings: Any) -> dict[str, Any]:
    """The shipped artifact with a four-point curve and known evaluation figures, pinned."""
    body = json.loads(SHIPPED.read_text(encoding="utf-8"))
    body["version"] = "r1-small"
    body["curve"] = SMALL_CURVE
    body["evaluation"] = {
        "out_of_fold": {
            "mmlu": {
                "apgr": 0.6165,
                "cpt50": 0.361,
                "cpt80": 0.6663,
                "n": 4270,
                "share_for_95pct_quality": 0.5669,
            }
        }
    }
    path = tmp_path / "small.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    settings.ORCHESTRATOR_ROUTER_ARTIFACT = str(path)
    router_forget()
    return body


def test_router_curve_read_returns_the_shipped_artifacts_points() -> None:
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))

    curve = router_curve_read()

    assert curve["version"] == shipped["version"]
    assert curve["data_sha256"] == shipped["data_sha256"]
    assert curve["trained_on_rows"] == shipped["trained_on"]["rows"]
    assert curve["points"] == [
        {
            "premium_share_pct": round(p["premium_share"] * 100, 2),
            "quality_kept_pct": p["quality_kept_pct"],
            "threshold": p["threshold"],
        }
        for p in shipped["curve"]
    ]


def test_operating_point_of_the_built_in_target_without_a_policy(
    small_router: dict[str, Any],
) -> None:
    curve = router_curve_read()

    assert curve["version"] == "r1-small"
    assert curve["points"] == [
        {"premium_share_pct": 0.0, "quality_kept_pct": 80.0, "threshold": 1.0},
        {"premium_share_pct": 25.0, "quality_kept_pct": 90.0, "threshold": 0.5},
        {"premium_share_pct": 50.0, "quality_kept_pct": 96.0, "threshold": 0.3},
        {"premium_share_pct": 100.0, "quality_kept_pct": 100.0, "threshold": 0.1},
    ]
    # 95 % to keep: the highest threshold whose point keeps at least 95 % is 0.3.
    assert curve["operating_point"] == {
        "premium_share_pct": 50.0,
        "quality_kept_pct": 96.0,
        "threshold": 0.3,
        "policy": "",
        "policy_threshold": None,
        "quality_target_pct": 95.0,
    }
    assert curve["out_of_fold"] == [
        {
            "benchmark": "mmlu",
            "n": 4270,
            "apgr": 0.6165,
            "cpt50_pct": 36.1,
            "cpt80_pct": 66.63,
            "share_for_95pct_quality_pct": 56.69,
        }
    ]


def test_operating_point_of_the_default_policys_threshold(small_router: dict[str, Any]) -> None:
    RoutingPolicy.objects.create(name="thrifty", is_default=True, router={"threshold": 0.6})

    point = router_curve_read()["operating_point"]

    # The curve's point at or below 0.6 is the one at 0.5.
    assert point == {
        "premium_share_pct": 25.0,
        "quality_kept_pct": 90.0,
        "threshold": 0.5,
        "policy": "thrifty",
        "policy_threshold": 0.6,
        "quality_target_pct": None,
    }


def test_a_heuristic_default_policy_has_no_operating_point(small_router: dict[str, Any]) -> None:
    RoutingPolicy.objects.create(name="plain", is_default=True, router={"mode": "heuristic"})

    curve = router_curve_read()

    assert (curve["operating_point"], curve["mode"]) == (None, "heuristic")


def test_analytics_reads_the_curve_through_the_setting(
    small_router: dict[str, Any], settings: Any
) -> None:
    assert router_curve() == router_curve_read()

    settings.ORCHESTRATOR_ROUTER_CURVE = "routing.router.report.no_such_reader"
    assert router_curve() is None
    settings.ORCHESTRATOR_ROUTER_CURVE = ""
    assert router_curve() is None


def test_routing_page_shows_the_learned_router_panel(
    admin_client: Client, small_router: dict[str, Any]
) -> None:
    response = admin_client.get(reverse("routing:index"))

    page = response.content.decode()
    sha = small_router["data_sha256"]
    assert '<td data-router="version"><code>r1-small</code></td>' in page
    assert f'<code title="{sha}">{sha[:12]}…</code>' in page
    assert f'<td data-router="rows">{small_router["trained_on"]["rows"]}</td>' in page
    assert (
        "50.0 % of prompts to premium, 96.0 % of its quality kept (threshold 0.3, for a 95.0 % "
        "target)"
    ) in page
    assert (
        '<tr data-benchmark="mmlu"><td>mmlu</td><td>4270</td><td>0.6165</td>\n'
        "        <td>36.1 %</td>\n        <td>66.63 %</td>\n        <td>56.69 %</td></tr>"
    ) in page
    spec = response.context["charts"]["router-curve"]
    assert spec["data"][0]["x"] == [0.0, 25.0, 50.0, 100.0]
    assert spec["data"][1]["x"] == [50.0]


def test_routing_page_without_a_readable_artifact(
    admin_client: Client, tmp_path: Path, settings: Any
) -> None:
    settings.ORCHESTRATOR_ROUTER_ARTIFACT = str(tmp_path / "missing.json")

    response = admin_client.get(reverse("routing:index"))

    assert response.status_code == 200
    assert "No router artifact could be read." in response.content.decode()
