"""Budgets in the admin: editable limits and alert targets, the current period's spend and holds
beside them, and each alert with how its deliveries went."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from routing.budget_alerts import budget_alert_deliveries_resend
from routing.budgets import budget_limit_apply
from routing.models import (
    Budget,
    BudgetAlert,
    BudgetAlertDelivery,
    BudgetPeriod,
    BudgetReservation,
)


class BudgetPeriodInline(admin.TabularInline):
    model = BudgetPeriod
    extra = 0
    fields = ("starts_at", "ends_at", "limit_usd", "spent_usd", "reserved_usd", "soft_alerted_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("-starts_at",)
    max_num = 0


LIMIT_FIELDS = (
    "name",
    "scope",
    "api_key_id",
    "user",
    "model",
    "period",
    "limit_usd",
    "soft_alert_share",
    "hard_stop",
    "max_cost_per_request_usd",
    "enabled",
)


def _form_field(field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    # A webhook URL typed without a scheme means https.
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class BudgetAdminForm(forms.ModelForm):
    """The webhook's signing secret can be set, replaced or removed, never read back."""

    new_webhook_secret = forms.CharField(
        label="New signing secret",
        required=False,
        strip=True,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs each webhook body (HMAC-SHA256). Leave empty to keep the current one.",
    )
    remove_webhook_secret = forms.BooleanField(label="Remove the signing secret", required=False)

    class Meta:
        model = Budget
        # Every field but the stored secret.
        fields = (*LIMIT_FIELDS, "alert_webhook_url", "alert_emails")
        formfield_callback = _form_field

    def save(self, commit: bool = True) -> Budget:
        if secret := self.cleaned_data.get("new_webhook_secret"):
            self.instance.alert_webhook_secret = secret
        elif self.cleaned_data.get("remove_webhook_secret"):
            self.instance.alert_webhook_secret = ""
        budget: Budget = super().save(commit)
        return budget


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    form = BudgetAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": LIMIT_FIELDS}),
        (
            "Alerts",
            {
                "description": "Where crossing the soft alert share is sent, once per period.",
                "fields": (
                    "alert_webhook_url",
                    "webhook_signing_secret",
                    "new_webhook_secret",
                    "remove_webhook_secret",
                    "alert_emails",
                ),
            },
        ),
    )
    readonly_fields = ("webhook_signing_secret",)
    list_display = (
        "name",
        "scope",
        "period",
        "limit_usd",
        "current_spent_usd",
        "current_reserved_usd",
        "hard_stop",
        "enabled",
    )
    list_filter = ("scope", "period", "hard_stop", "enabled")
    search_fields = ("name",)
    raw_id_fields = ("user", "model")
    inlines = [BudgetPeriodInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Budget]:
        return super().get_queryset(request).prefetch_related("periods")

    def _current(self, budget: Budget) -> BudgetPeriod | None:
        now = timezone.now()
        return next(
            (p for p in budget.periods.all() if p.starts_at <= now < p.ends_at),
            None,
        )

    @admin.display(description="spent this period (USD)")
    def current_spent_usd(self, budget: Budget) -> Decimal:
        period = self._current(budget)
        return period.spent_usd if period else Decimal(0)

    @admin.display(description="reserved now (USD)")
    def current_reserved_usd(self, budget: Budget) -> Decimal:
        period = self._current(budget)
        return period.reserved_usd if period else Decimal(0)

    @admin.display(description="signing secret")
    def webhook_signing_secret(self, budget: Budget) -> str:
        return "set" if budget.alert_webhook_secret else "not set"

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        budget_limit_apply(budget=obj)


@admin.register(BudgetReservation)
class BudgetReservationAdmin(admin.ModelAdmin):
    """Holds are written by the request path only; the admin shows them."""

    list_display = ("request_id", "period", "amount_usd", "actual_usd", "state", "created_at")
    list_filter = ("state",)
    search_fields = ("request_id",)
    list_select_related = ("period__budget",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class BudgetAlertDeliveryInline(admin.TabularInline):
    model = BudgetAlertDelivery
    extra = 0
    fields = (
        "channel",
        "target",
        "state",
        "attempts",
        "last_status_code",
        "last_error",
        "last_attempt_at",
        "delivered_at",
    )
    readonly_fields = fields
    can_delete = False
    max_num = 0


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("budget", "spent_usd", "limit_usd", "created_at", "delivery_states")
    list_select_related = ("budget",)
    inlines = [BudgetAlertDeliveryInline]
    actions = ["deliveries_resend"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BudgetAlert]:
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="deliveries")
    def delivery_states(self, alert: BudgetAlert) -> str:
        """Each channel's state and attempts, e.g. `webhook: delivered (2 attempts)`."""
        parts = []
        for delivery in alert.deliveries.all():
            attempts = "1 attempt" if delivery.attempts == 1 else f"{delivery.attempts} attempts"
            error = f", last error: {delivery.last_error[:80]}" if delivery.last_error else ""
            parts.append(f"{delivery.channel}: {delivery.state} ({attempts}{error})")
        return "; ".join(parts) or "none configured"

    @admin.action(description="Send the failed or pending deliveries again")
    def deliveries_resend(self, request: HttpRequest, queryset: QuerySet[BudgetAlert]) -> None:
        count = budget_alert_deliveries_resend(
            alert_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(request, f"{count} deliveries queued again.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
