from __future__ import annotations

from django.db import models
from django.db.models import Q

from routing.models.budget import BudgetAlert


class BudgetAlertDelivery(models.Model):
    """One way a soft alert is sent (a webhook or an e-mail) and how its attempts went.

    A delivery is created with its alert, at most one per channel (the unique constraint), so
    an alert is sent once per channel however many requests crossed the share together.
    """

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "E-mail"

    class State(models.TextChoices):
        PENDING = "pending", "Pending (queued or between attempts)"
        DELIVERED = "delivered"
        FAILED = "failed", "Failed (refused, or out of attempts)"

    alert = models.ForeignKey(BudgetAlert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # The URL or the addresses as the budget named them when the alert was recorded.
    target = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # An attempt in flight holds the delivery until then, so a task delivered twice by the
    # broker cannot send it twice at the same time.
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["alert", "channel"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "channel"], name="budgetalertdelivery_one_per_channel"
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(state="pending"),
                name="budgetalertdelivery_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} of alert {self.alert_id}: {self.state}"
