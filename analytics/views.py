from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from analytics.selectors import totals_all_time


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "analytics/dashboard.html", {"totals": totals_all_time()})


@login_required
def reports(request: HttpRequest) -> HttpResponse:
    return render(request, "analytics/reports.html", {"totals": totals_all_time()})
