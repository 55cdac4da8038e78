from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from routing.overview import routing_overview


@login_required
def index(request: HttpRequest) -> HttpResponse:
    overview = routing_overview(now=timezone.now())
    return render(request, "routing/index.html", {"overview": overview})


@login_required
def telemetry(request: HttpRequest) -> HttpResponse:
    return render(request, "routing/telemetry.html")
