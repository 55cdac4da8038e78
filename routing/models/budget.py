from __future__ import annotations

import re
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    URLValidator,
    validate_email,
)
from django.db import models
from django.db.models import Q

from providers.models import LLMModel


def alert_emails_split(text: str) -> list[str]:
    """The addresses of a budget's `alert_emails`, separated by commas, semicolons or spaces."""
    return [part for part in re.split(r"[,;\s]+", text) if part]


def alert_emails_validate(text: str) -> None:
    for address in alert_emails_split(text):
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not an e-mail address.") from None


# Costs are stored like the request log stores them (8 decimal places), so a single token of
# the cheapest model still registers.


class Budget(models.Model):
    """A spending limit over a calendar-aligned period, for everyone or for one key, user or model.

    `api_key_id` is a plain id: API keys arrive with the gateway API, and until then a budget
    names the key by the id it will have.
    """

    class Scope(models.TextChoices):
        GLOBAL = "global", "Global"
        API_KEY = "api_key", "API key"
        USER = "user", "User"
        MODEL = "model", "Model"

    class Period(models.TextChoices):
        DAY = "day", "Day"
        WEEK = "week", "Week (from Monday)"
        MONTH = "month", "Month"

    name = models.SlugField(max_length=64, unique=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.GLOBAL)
    api_key_id = models.BigIntegerField(null=True, blank=True, help_text="For API key budgets.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
    )
    model = models.ForeignKey(
        LLMModel, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    limit_usd = models.DecimalField(
        max_digits=18, decimal_places=8, validators=[MinValueValidator(Decimal(0))]
    )
    soft_alert_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.800"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="Share of the limit whose crossing records an alert, e.g. 0.8.",
    )
    hard_stop = models.BooleanField(
        default=True, help_text="Refuse requests that could exceed the limit (else only track)."
    )
    max_cost_per_request_usd = models.DecimalField(
        max_digits=18,
        decimal_places=8,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )
    enabled = models.BooleanField(default=True)
    # Where a soft alert is sent (docs/guards.md#budget-alerts). The signing secret is kept to
    # sign each webhook body, so it cannot be hashed; the admin never shows it back.
    alert_webhook_url = models.URLField(
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="POSTed a signed JSON body when the soft alert share is crossed.",
    )
    alert_webhook_secret = models.CharField(max_length=200, blank=True)
    alert_emails = models.TextField(
        blank=True,
        validators=[alert_emails_validate],
        help_text="E-mailed when the soft alert share is crossed (by line or comma).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        scope="global",
                        api_key_id__isnull=True,
                        user__isnull=True,
                        model__isnull=True,
                    )
                    | Q(
                        scope="api_key",
                        api_key_id__isnull=False,
                        user__isnull=True,
                        model__isnull=True,
                    )
                    | Q(
                        scope="user",
                        api_key_id__isnull=True,
                        user__isnull=False,
                        model__isnull=True,
                    )
                    | Q(
                        scope="model",
                        api_key_id__isnull=True,
                        user__isnull=True,
                        model__isnull=False,
                    )
                ),
                name="budget_scope_target",
                violation_error_message="Name exactly the key, user or model the scope asks for.",
            ),
            models.CheckConstraint(condition=Q(limit_usd__gte=0), name="budget_limit_not_negative"),
        ]
        indexes = [models.Index(fields=["scope", "enabled"], name="budget_scope_enabled")]

    def __str__(self) -> str:
        return self.name


class BudgetPeriod(models.Model):
    """Spend and reservations of one budget in one period.

    `limit_usd` is the budget's limit copied in, so that admission is a single-row conditional
    UPDATE; editing a budget through its service copies the new limit into open periods.
    """

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="periods")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    limit_usd = models.DecimalField(max_digits=18, decimal_places=8)
    spent_usd = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    reserved_usd = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    soft_alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["budget", "-starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "starts_at"], name="budgetperiod_unique"),
            models.CheckConstraint(
                condition=Q(reserved_usd__gte=0), name="budgetperiod_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(spent_usd__gte=0), name="budgetperiod_spent_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget.name} from {self.starts_at:%Y-%m-%d}"


class BudgetReservation(models.Model):
    """The most a request could cost, held against one budget period until it settles."""

    class State(models.TextChoices):
        HELD = "held"
        SETTLED = "settled"
        RELEASED = "released", "Released (failed, cancelled or expired)"

    request_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    period = models.ForeignKey(BudgetPeriod, on_delete=models.CASCADE, related_name="reservations")
    amount_usd = models.DecimalField(max_digits=18, decimal_places=8)
    actual_usd = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.HELD)
    created_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(state="held"),
                name="budgetreservation_held",
            )
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.state} {self.amount_usd}"


class BudgetAlert(models.Model):
    """A budget period crossed its soft alert share; recorded once per period (the one-to-one
    period is the uniqueness), and sent by its `deliveries`."""

    period = models.OneToOneField(BudgetPeriod, on_delete=models.CASCADE, related_name="alert")
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    spent_usd = models.DecimalField(max_digits=18, decimal_places=8)
    limit_usd = models.DecimalField(max_digits=18, decimal_places=8)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.budget.name}: {self.spent_usd} of {self.limit_usd}"
