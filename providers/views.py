from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from providers.models import Provider


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    providers = Provider.objects.prefetch_related("models").order_by("name")
    return render(request, "providers/model_list.html", {"providers": providers})
