from __future__ import annotations

from django.http import HttpRequest

NAVIGATION = (
    ("Dashboard", "dashboard"),
    ("Chat", "chat:index"),
    ("Models", "providers:models"),
    ("Routing", "routing:index"),
    ("Reports", "analytics:reports"),
    ("Telemetry", "routing:telemetry"),
)


def navigation(request: HttpRequest) -> dict[str, object]:
    match = getattr(request, "resolver_match", None)
    current = match.view_name if match else ""
    return {"navigation": NAVIGATION, "current_view": current}
