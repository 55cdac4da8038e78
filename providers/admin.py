from __future__ import annotations

from django.contrib import admin

from providers.models import LLMModel, Provider


class LLMModelInline(admin.TabularInline):
    model = LLMModel
    extra = 0
    fields = (
        "name",
        "display_name",
        "tier",
        "context_window",
        "input_price_per_mtok_usd",
        "output_price_per_mtok_usd",
        "enabled",
        "is_baseline",
    )


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "locality", "base_url", "enabled")
    list_filter = ("kind", "locality", "enabled")
    search_fields = ("name", "base_url")
    inlines = [LLMModelInline]


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin):
    list_display = ("name", "provider", "tier", "enabled", "is_baseline")
    list_filter = ("tier", "enabled", "is_baseline", "provider")
    search_fields = ("name", "display_name", "provider__name")
