from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """One change made through the management API (`/api/manage/`), written in the same
    transaction as the change. `changes` maps each changed field to `{"old", "new"}`; no
    credential value is ever kept (a provider's credential is named, never copied)."""

    class Action(models.TextChoices):
        CREATE = "create", "Create"
        UPDATE = "update", "Update"

    class TargetKind(models.TextChoices):
        PROVIDER = "provider", "Provider"
        MODEL = "model", "Model"
        AGENT = "agent", "Agent"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # Plain ids, not foreign keys: the record outlives the user or key that made the change.
    user_id = models.BigIntegerField(null=True, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=8, choices=Action.choices)
    target_kind = models.CharField(max_length=8, choices=TargetKind.choices)
    target_ref = models.CharField(max_length=300)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target_kind", "target_ref"], name="auditevent_target")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_kind} {self.target_ref}"
