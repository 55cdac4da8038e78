"""The replay page: the last days' requests through another knob, beside what happened."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from routing.config.cache import routing_config_get
from routing.engine.taxonomy import TIERS
from routing.replay import ReplayError
from routing.replay_selector import replay_query_parse, replay_report
from routing.router import store
from routing.router.model import ArtifactError

FIELDS = ("days", "threshold", "quality_target", "ladder", "policy", "router")


@login_required
def replay(request: HttpRequest) -> HttpResponse:
    form = {name: request.GET.get(name, "").strip() for name in FIELDS}
    context: dict[str, object] = {
        "form": form,
        "include_demo": request.GET.get("include_demo") == "on",
        "tiers": ", ".join(TIERS),
        "policies": sorted(routing_config_get().policies),
        "versions": _versions(),
    }
    if request.GET:
        try:
            query = replay_query_parse(**form, include_demo=bool(context["include_demo"]))
            context["report"] = replay_report(query=query, now=timezone.now())
        except ReplayError as exc:
            context["error"] = str(exc)
            context["error_field"] = exc.field
    status = 400 if "error" in context else 200
    return render(request, "routing/replay.html", context, status=status)


def _versions() -> list[str]:
    try:
        return [v.version for v in store.versions_list()]
    except ArtifactError:
        return []
