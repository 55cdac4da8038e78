"""The response cache's purge actions on the provider, model and request-log admin pages.

They live here, with the cache, and are added to those pages' registered admins: providers
and analytics know nothing of routing's guards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

import analytics.admin  # noqa: F401 (its pages are registered before actions are added)
import providers.admin  # noqa: F401
from analytics.models import RequestLog
from providers.models import LLMModel, Provider
from routing.guards.response_cache import ResponseCache


def _purge_action(description: str, purge: Callable[[QuerySet[Any]], int]) -> Callable[..., None]:
    """An admin action named `purge_cached_answers`, as it was on each page before it moved."""

    @admin.action(description=description)
    def purge_cached_answers(
        modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
    ) -> None:
        purged = purge(queryset)
        modeladmin.message_user(request, f"{purged} cached answers purged.", messages.SUCCESS)

    return purge_cached_answers


def _providers_answers(queryset: QuerySet[Provider]) -> int:
    return ResponseCache().purge_models([(provider.name, None) for provider in queryset])


def _models_answers(queryset: QuerySet[LLMModel]) -> int:
    targets = [(m.provider.name, m.name) for m in queryset.select_related("provider")]
    return ResponseCache().purge_models(targets)


def _requests_answers(queryset: QuerySet[RequestLog]) -> int:
    """By the key each row's trace names (`decision_trace.cache.key`)."""
    responses = ResponseCache()
    purged = 0
    for trace in queryset.values_list("decision_trace", flat=True):
        key = (trace or {}).get("cache", {}).get("key")
        if isinstance(key, str) and re.fullmatch("[0-9a-f]{64}", key):
            purged += responses.purge(key=key)
    return purged


for _model, _action in (
    (Provider, _purge_action("Purge their cached answers", _providers_answers)),
    (LLMModel, _purge_action("Purge their cached answers", _models_answers)),
    (RequestLog, _purge_action("Purge their answers from the response cache", _requests_answers)),
):
    _page = admin.site.get_model_admin(_model)
    _page.actions = [*(_page.actions or ()), _action]
