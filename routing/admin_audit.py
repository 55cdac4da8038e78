"""Admin for the management API's audit trail (read only) and the agent switches it sets."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from routing.models import AgentSwitch, AuditEvent


class ReadOnly(admin.ModelAdmin):
    """Written by the management API only (`routing.registry_edits`), never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnly):
    list_display = ("at", "action", "target_kind", "target_ref", "user_id", "api_key_id")
    list_filter = ("action", "target_kind")
    search_fields = ("target_ref",)
    date_hierarchy = "at"
    readonly_fields = (
        "at",
        "user_id",
        "api_key_id",
        "action",
        "target_kind",
        "target_ref",
        "changes",
    )


@admin.register(AgentSwitch)
class AgentSwitchAdmin(ReadOnly):
    """Set with `PATCH /api/manage/agents/{name}`, so that every change is audited."""

    list_display = ("name", "enabled", "changed_at")
