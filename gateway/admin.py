"""Admin for API keys (created here or by `manage.py apikey`), batches and dead letters."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from gateway.apikeys import apikey_create, apikey_forget, apikey_revoke
from gateway.batch import dead_letter_retry
from gateway.tasks import batch_item_enqueue
from routing.models import ApiKey, Batch, BatchItem, DeadLetter


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "owner", "rpm_limit", "tpm_limit", "active", "last_used_at")
    list_filter = ("enabled",)
    search_fields = ("name", "prefix", "owner__username")
    fields = (
        "name",
        "owner",
        "rpm_limit",
        "tpm_limit",
        "local_only",
        "enabled",
        "prefix",
        "revoked_at",
        "created_at",
        "last_used_at",
    )
    readonly_fields = ("prefix", "revoked_at", "created_at", "last_used_at")
    actions = ["revoke"]

    @admin.display(boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            apikey_forget(api_key=obj)
            return
        created = apikey_create(
            name=obj.name,
            owner_username=obj.owner.get_username() if obj.owner else None,
            rpm_limit=obj.rpm_limit,
            tpm_limit=obj.tpm_limit,
            local_only=obj.local_only,
        )
        obj.pk = created.api_key.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            f"The new API key is {created.plaintext} — copy it now, it is not shown again.",
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            apikey_revoke(api_key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = ("index", "state", "attempts", "error_code", "request_id")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "api_key", "user", "total", "succeeded", "failed")
    readonly_fields = (
        "api_key",
        "user",
        "priority",
        "total",
        "succeeded",
        "failed",
        "created_at",
        "finished_at",
    )
    inlines = [BatchItemInline]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("item", "error_code", "attempts", "created_at", "retried_at", "retry_count")
    list_filter = ("error_code",)
    readonly_fields = (
        "item",
        "error_code",
        "error_message",
        "attempts",
        "created_at",
        "retried_at",
        "retry_count",
    )
    actions = ["retry"]

    @admin.action(description="Retry the selected items")
    def retry(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for dead_letter in queryset:
            dead_letter_retry(dead_letter=dead_letter, enqueue=batch_item_enqueue)
        self.message_user(request, f"Sent {queryset.count()} item(s) back to the queue.")
