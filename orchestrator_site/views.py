from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from orchestrator_site.health import UNHEALTHY, health_report


async def health(request: HttpRequest) -> JsonResponse:
    report = await health_report()
    return JsonResponse(report, status=503 if report["status"] == UNHEALTHY else 200)
