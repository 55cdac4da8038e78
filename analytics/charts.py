"""Plotly figure specs (plain dicts) built from report values. Pure: no ORM, no clock.

Amounts go out as decimal strings; plotly reads numeric strings on linear axes, so money never
passes through a float here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from analytics.values import BreakdownRow, DayPoint, ModelDayCost

CENT = Decimal("0.0001")
LAYOUT = {"margin": {"l": 50, "r": 10, "t": 36, "b": 40}, "height": 300}


def _money(value: Decimal) -> str:
    return format(value.quantize(CENT), "f")


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {**LAYOUT, "title": {"text": title}, **extra}


def cost_by_model_chart(points: Sequence[ModelDayCost]) -> dict[str, Any]:
    days = sorted({p.day for p in points})
    models = sorted({p.model_name for p in points})
    cost = {(p.day, p.model_name): p.cost_usd for p in points}
    data = [
        {
            "type": "bar",
            "name": model,
            "x": [d.isoformat() for d in days],
            "y": [_money(cost.get((d, model), Decimal(0))) for d in days],
        }
        for model in models
    ]
    return {"data": data, "layout": _layout("Cost per day by model (USD)", barmode="stack")}


def savings_chart(points: Sequence[DayPoint]) -> dict[str, Any]:
    days = [p.day.isoformat() for p in points]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "actual",
                "x": days,
                "y": [_money(p.totals.comparable_cost_usd) for p in points],
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "all-premium baseline",
                "x": days,
                "y": [_money(p.totals.comparable_baseline_usd) for p in points],
            },
        ],
        "layout": _layout("Actual cost vs baseline (USD)"),
    }


def model_distribution_chart(rows: Sequence[BreakdownRow]) -> dict[str, Any]:
    labels = [r.key or "(none)" for r in rows]
    return {
        "data": [
            {
                "type": "pie",
                "name": "requests",
                "labels": labels,
                "hole": 0.4,
                "values": [r.totals.requests for r in rows],
                "domain": {"column": 0},
                "title": {"text": "requests"},
            },
            {
                "type": "pie",
                "name": "cost",
                "labels": labels,
                "hole": 0.4,
                "values": [_money(r.totals.cost_usd) for r in rows],
                "domain": {"column": 1},
                "title": {"text": "cost"},
            },
        ],
        "layout": _layout("Model distribution", grid={"rows": 1, "columns": 2}),
    }


def latency_chart(rows: Sequence[BreakdownRow]) -> dict[str, Any]:
    labels = [r.key or "(none)" for r in rows]
    return {
        "data": [
            {
                "type": "bar",
                "name": "p50",
                "x": labels,
                "y": [r.totals.p50_latency_ms for r in rows],
            },
            {
                "type": "bar",
                "name": "p95",
                "x": labels,
                "y": [r.totals.p95_latency_ms for r in rows],
            },
        ],
        "layout": _layout("Latency percentiles by model (ms)", barmode="group"),
    }


def task_type_chart(rows: Sequence[BreakdownRow]) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda r: -r.totals.requests)
    return {
        "data": [
            {
                "type": "bar",
                "x": [r.key or "(none)" for r in ordered],
                "y": [r.totals.requests for r in ordered],
                "name": "requests",
            }
        ],
        "layout": _layout("Requests by task type"),
    }


def router_curve_chart(curve: Mapping[str, Any]) -> dict[str, Any]:
    """The router's out-of-fold cost-quality curve, with the default policy's operating point."""
    points = curve.get("points", [])
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"router {curve.get('version', '')}",
            "x": [p["premium_share_pct"] for p in points],
            "y": [p["quality_kept_pct"] for p in points],
            "customdata": [p["threshold"] for p in points],
            "hovertemplate": "%{x} % to premium, %{y} % kept (threshold %{customdata})"
            "<extra></extra>",
        }
    ]
    point = curve.get("operating_point")
    if point:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"default policy{' ' + point['policy'] if point.get('policy') else ''}",
                "x": [point["premium_share_pct"]],
                "y": [point["quality_kept_pct"]],
                "marker": {"size": 12, "symbol": "diamond"},
            }
        )
    return {
        "data": data,
        "layout": _layout(
            "Cost-quality curve",
            xaxis={"title": {"text": "prompts sent to premium (%)"}, "range": [-2, 102]},
            yaxis={"title": {"text": "quality kept (%)"}},
        ),
    }
