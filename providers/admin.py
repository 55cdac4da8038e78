from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import IntegrityError, models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from providers.adapters.types import ProviderError
from providers.forms import LLMModelInlineFormSet, ProviderForm
from providers.models import (
    BASELINE_UNIQUE_MESSAGE,
    MODEL_NAME_UNIQUE_MESSAGE,
    LLMModel,
    Provider,
)
from providers.services import (
    CredentialInvalid,
    provider_credential_set,
    provider_health_check,
    provider_models_import,
)

PRICE_FIELDS = (
    "input_price_per_mtok_usd",
    "output_price_per_mtok_usd",
    "cached_input_price_per_mtok_usd",
)


def _constraint_message(error: IntegrityError) -> str:
    text = str(error)
    if "llmmodel_single_baseline" in text:
        return BASELINE_UNIQUE_MESSAGE
    if "llmmodel_unique_per_provider" in text:
        return MODEL_NAME_UNIQUE_MESSAGE
    return "The change conflicts with another row (a uniqueness rule of the registry)."


class ConstraintErrorsAsMessages(admin.ModelAdmin):
    """Form validation catches constraint violations first; this covers the rest (a
    concurrent save between validation and write) with a message instead of a server error."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except IntegrityError as error:
            self.message_user(request, f"Not saved: {_constraint_message(error)}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class LLMModelInline(admin.TabularInline):
    model = LLMModel
    formset = LLMModelInlineFormSet
    extra = 0
    fields = (
        "name",
        "display_name",
        "tier",
        "context_window",
        "max_output_tokens",
        *PRICE_FIELDS,
        "enabled",
        "is_baseline",
    )


@admin.register(Provider)
class ProviderAdmin(ConstraintErrorsAsMessages):
    form = ProviderForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = (
        "name",
        "kind",
        "locality",
        "base_url",
        "enabled",
        "follows_credential_env",
        "credential",
        "health_status",
        "health_latency_ms",
        "health_checked_at",
    )
    list_filter = ("kind", "locality", "enabled", "health_status")
    search_fields = ("name", "base_url")
    readonly_fields = (
        "credential",
        "health_status",
        "health_latency_ms",
        "health_error",
        "health_checked_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "kind",
                    "base_url",
                    "locality",
                    "enabled",
                    "follows_credential_env",
                )
            },
        ),
        (
            "Credential",
            {"fields": ("credential", "credential_env", "credential_secret", "credential_clear")},
        ),
        ("Timeouts (seconds)", {"fields": ("connect_timeout_s", "read_timeout_s")}),
        (
            "Health (last check)",
            {
                "fields": (
                    "health_status",
                    "health_latency_ms",
                    "health_error",
                    "health_checked_at",
                )
            },
        ),
    )
    inlines = [LLMModelInline]
    actions = ["test_connection", "import_models"]

    @admin.display(description="credential")
    def credential(self, provider: Provider) -> str:
        return provider.credential_state

    def save_model(
        self, request: HttpRequest, obj: Provider, form: ProviderForm, change: bool
    ) -> None:
        if (
            change
            and "enabled" in form.changed_data
            and "follows_credential_env" not in (form.changed_data)
        ):
            # Turning it on or off by hand is the admin's choice: start-up stops following the key.
            obj.follows_credential_env = False
        super().save_model(request, obj, form, change)
        secret = form.cleaned_data.get("credential_secret", "")
        try:
            if secret:
                provider_credential_set(provider=obj, secret=secret)
            elif form.cleaned_data.get("credential_clear") or (
                obj.credential_env and "credential_env" in form.changed_data
            ):
                # Naming a variable, or clearing, drops any stored key: one source at a time.
                provider_credential_set(provider=obj, env_var=obj.credential_env)
        except CredentialInvalid as error:
            self.message_user(request, str(error), messages.ERROR)

    @admin.action(description="Test connection (list the provider's models)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            check = provider_health_check(provider=provider)
            if check.status == Provider.Health.HEALTHY:
                self.message_user(
                    request,
                    f"{provider.name}: healthy, {check.model_count} models listed "
                    f"in {check.latency_ms} ms.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"{provider.name}: down: {check.error}", messages.ERROR)

    @admin.action(description="Import models (new ones start disabled, price unknown)")
    def import_models(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            try:
                imported = provider_models_import(provider=provider)
            except ProviderError as error:
                self.message_user(
                    request, f"{provider.name}: import failed: {error.message}", messages.ERROR
                )
                continue
            created = ", ".join(imported.created) or "none"
            self.message_user(
                request,
                f"{provider.name}: {len(imported.created)} models imported ({created}); "
                f"{len(imported.existing)} already present. Set their prices and enable them.",
                messages.SUCCESS,
            )


@admin.register(LLMModel)
class LLMModelAdmin(ConstraintErrorsAsMessages):
    list_display = (
        "name",
        "provider",
        "tier",
        *PRICE_FIELDS,
        "accepts_images",
        "accepts_tools",
        "accepts_json_output",
        "answers_chat",
        "enabled",
        "is_baseline",
    )
    list_filter = (
        "tier",
        "accepts_images",
        "accepts_tools",
        "accepts_json_output",
        "answers_chat",
        "enabled",
        "is_baseline",
        "provider__kind",
        "provider",
    )
    search_fields = ("name", "display_name", "provider__name")
    list_select_related = ("provider",)
    # Only the prices can be empty in the list; an empty price is unknown, not free.
    empty_value_display = "unknown"
