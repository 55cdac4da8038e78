from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from analytics.charts import router_curve_chart
from routing.overview import routing_overview
from routing.router.model import ArtifactError
from routing.router.report import router_curve_read


@login_required
def index(request: HttpRequest) -> HttpResponse:
    overview = routing_overview(now=timezone.now())
    try:
        router: dict[str, Any] | None = router_curve_read()
    except (ArtifactError, OSError):
        router = None
    charts = {"router-curve": router_curve_chart(router)} if router else {}
    return render(
        request, "routing/index.html", {"overview": overview, "router": router, "charts": charts}
    )


@login_required
def telemetry(request: HttpRequest) -> HttpResponse:
    return render(request, "routing/telemetry.html")
