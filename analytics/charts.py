"""Plotly figure specs (plain dicts) built from report values. Pure: no ORM, no clock.

Amounts go out as decimal strings; plotly reads numeric strings on linear axes, so money never
passes through a float here.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from analytics.values import BreakdownRow, DayPoint, ModelDayCost

CENT = Decimal("0.0001")
# Axis titles and tick labels push the margins out as far as they need (automargin): fixed
# margins clipped long model names and money ticks.
LAYOUT = {"margin": {"l": 10, "r": 10, "t": 36, "b": 10}, "height": 300}
NO_MODEL = "(none)"
# Plotly's own qualitative colours (D3 category10), then a second, lighter set.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
)


def model_colours(names: Iterable[str]) -> dict[str, str]:
    """One colour per model name, the same in every chart.

    A name starts at the palette slot its CRC-32 picks and takes the next free one; names are
    placed in sorted order, so the same set of names always gets the same colours, and a model
    keeps its colour on every page that knows the same models. Beyond the palette's size,
    colours repeat.
    """
    colours: dict[str, str] = {}
    used: set[int] = set()
    for name in sorted(set(names)):
        slot = zlib.crc32(name.encode()) % len(PALETTE)
        if len(used) < len(PALETTE):
            while slot in used:
                slot = (slot + 1) % len(PALETTE)
        used.add(slot)
        colours[name] = PALETTE[slot]
    return colours


def _colour(colours: Mapping[str, str], name: str) -> str:
    return colours.get(name) or model_colours([name])[name]


def _money(value: Decimal) -> str:
    return format(value.quantize(CENT), "f")


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "automargin": True, **extra}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {**LAYOUT, "title": {"text": title}, **extra}


def _x(moment: date) -> str:
    """A date, or an hour's start as plotly reads it (local wall time, no offset)."""
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.isoformat()


def _time_axis(points: Sequence[date]) -> dict[str, Any]:
    hourly = any(isinstance(p, datetime) for p in points)
    return _axis("hour" if hourly else "day", type="date")


def cost_by_model_chart(
    points: Sequence[ModelDayCost], colours: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Cost per bucket (day, or hour for short ranges), one stacked bar series per model."""
    colours = colours or {}
    buckets = sorted({p.day for p in points})
    models = sorted({p.model_name for p in points})
    cost = {(p.day, p.model_name): p.cost_usd for p in points}
    data = [
        {
            "type": "bar",
            "name": model,
            "marker": {"color": _colour(colours, model)},
            "x": [_x(b) for b in buckets],
            "y": [_money(cost.get((b, model), Decimal(0))) for b in buckets],
        }
        for model in models
    ]
    hourly = any(isinstance(b, datetime) for b in buckets)
    return {
        "data": data,
        "layout": _layout(
            f"Cost per {'hour' if hourly else 'day'} by model (USD)",
            barmode="stack",
            xaxis=_time_axis(buckets),
            yaxis=_axis("USD"),
        ),
    }


def savings_chart(points: Sequence[DayPoint]) -> dict[str, Any]:
    x = [_x(p.day) for p in points]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "actual",
                "x": x,
                "y": [_money(p.totals.comparable_cost_usd) for p in points],
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "all-premium baseline",
                "x": x,
                "y": [_money(p.totals.comparable_baseline_usd) for p in points],
            },
        ],
        "layout": _layout(
            "Actual cost vs baseline (USD)",
            xaxis=_time_axis([p.day for p in points]),
            yaxis=_axis("USD", rangemode="tozero"),
        ),
    }


def model_distribution_chart(
    rows: Sequence[BreakdownRow], colours: Mapping[str, str] | None = None
) -> dict[str, Any]:
    colours = colours or {}
    labels = [r.key or NO_MODEL for r in rows]
    marker = {"colors": [_colour(colours, label) for label in labels]}
    return {
        "data": [
            {
                "type": "pie",
                "name": "requests",
                "labels": labels,
                "hole": 0.4,
                "values": [r.totals.requests for r in rows],
                "marker": marker,
                "sort": False,
                "domain": {"column": 0},
                "title": {"text": "requests"},
            },
            {
                "type": "pie",
                "name": "cost",
                "labels": labels,
                "hole": 0.4,
                "values": [_money(r.totals.cost_usd) for r in rows],
                "marker": marker,
                "sort": False,
                "domain": {"column": 1},
                "title": {"text": "cost"},
            },
        ],
        "layout": _layout("Model distribution", grid={"rows": 1, "columns": 2}),
    }


def latency_chart(
    rows: Sequence[BreakdownRow], colours: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """p50 (lighter) and p95 per model, each bar in its model's colour."""
    colours = colours or {}
    labels = [r.key or NO_MODEL for r in rows]
    bar_colours = [_colour(colours, label) for label in labels]
    return {
        "data": [
            {
                "type": "bar",
                "name": "p50",
                "x": labels,
                "y": [r.totals.p50_latency_ms for r in rows],
                "marker": {"color": bar_colours, "opacity": 0.55},
            },
            {
                "type": "bar",
                "name": "p95",
                "x": labels,
                "y": [r.totals.p95_latency_ms for r in rows],
                "marker": {"color": bar_colours},
            },
        ],
        "layout": _layout(
            "Latency percentiles by model (ms)",
            barmode="group",
            xaxis=_axis("model", type="category"),
            yaxis=_axis("ms", rangemode="tozero"),
        ),
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
        "layout": _layout(
            "Requests by task type",
            xaxis=_axis("task type", type="category"),
            yaxis=_axis("requests", rangemode="tozero"),
        ),
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
            xaxis=_axis("prompts sent to premium (%)", range=[-2, 102]),
            yaxis=_axis("quality kept (%)"),
        ),
    }
