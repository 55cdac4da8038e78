from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from providers.models import Provider
from providers.services import local_health_refresh


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    # Local servers are probed here too: without a beat process nothing else would.
    local_health_refresh(now=timezone.now())
    providers = Provider.objects.prefetch_related("models").order_by("name")
    return render(request, "providers/model_list.html", {"providers": providers})
