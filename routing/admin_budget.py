"""Budgets in the admin: editable limits, and the current period's spend and holds beside them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from routing.budgets import budget_limit_apply
from routing.models import Budget, BudgetAlert, BudgetPeriod, BudgetReservation


class BudgetPeriodInline(admin.TabularInline):
    model = BudgetPeriod
    extra = 0
    fields = ("starts_at", "ends_at", "limit_usd", "spent_usd", "reserved_usd", "soft_alerted_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("-starts_at",)
    max_num = 0


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
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


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("budget", "spent_usd", "limit_usd", "created_at")
    list_select_related = ("budget",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
