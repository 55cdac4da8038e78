from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from analytics.models import ExportJob, RequestFeedback, RequestLog, StoredResponse


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """The log is written once by the engine; the admin only reads it."""

    list_display = ("created_at", "entry_point", "model_name", "status", "cost_usd", "latency_ms")
    list_filter = ("status", "entry_point", "cost_state", "locality", "cache_hit")
    search_fields = ("model_name", "provider_name", "request_id", "session_id")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    list_display = ("created_at", "owner", "kind", "state", "written_rows", "total_rows")
    list_filter = ("state", "kind")
    readonly_fields = ("query", "file_name", "error", "finished_at")


@admin.register(RequestFeedback)
class RequestFeedbackAdmin(admin.ModelAdmin):
    list_display = ("created_at", "request", "positive")
    list_filter = ("positive",)
    raw_id_fields = ("request",)


@admin.register(StoredResponse)
class StoredResponseAdmin(admin.ModelAdmin):
    """Answers of `/v1/responses` kept for `previous_response_id`: read and deleted here,
    never edited (their text is model output, shown as text)."""

    list_display = ("id", "created_at", "api_key_id", "model_ref")
    search_fields = ("id",)
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> StoredResponse | None:
        # The key is text: one Postgres cannot hold (a NUL) names no stored response.
        if "\x00" in object_id:
            return None
        return super().get_object(request, object_id, from_field)
