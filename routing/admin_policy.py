"""Admin for routing policies: rules with their fallbacks, state rules, and agent samples."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from routing.models import AgentSample, RoutingPolicy, RoutingRule, RuleFallback, StateRule


class RoutingRuleInline(admin.TabularInline):
    model = RoutingRule
    extra = 0
    fields = ("position", "task_type", "complexity", "primary", "tiers")
    show_change_link = True


class StateRuleInline(admin.TabularInline):
    model = StateRule
    extra = 0
    fields = ("position", "agent", "state", "target", "action")


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "sticky_sessions", "updated_at")
    inlines = (RoutingRuleInline, StateRuleInline)


class RuleFallbackInline(admin.TabularInline):
    model = RuleFallback
    extra = 0
    fields = ("position", "model")


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ("__str__", "primary", "position")
    list_filter = ("policy", "task_type")
    inlines = (RuleFallbackInline,)


@admin.register(AgentSample)
class AgentSampleAdmin(admin.ModelAdmin):
    list_display = ("sampled_at", "agent", "target", "state", "ok", "reason")
    list_filter = ("agent", "state", "ok")
    date_hierarchy = "sampled_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
