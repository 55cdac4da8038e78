from __future__ import annotations

from django.db import models


class AgentSample(models.Model):
    """One check of one monitoring agent; a short time series kept for the telemetry page."""

    agent = models.CharField(max_length=64)
    target = models.CharField(max_length=128, blank=True)
    state = models.CharField(max_length=32)
    ok = models.BooleanField(default=True, help_text="False when the probe itself failed.")
    reason = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    sampled_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-sampled_at"]
        indexes = [
            models.Index(fields=["agent", "target", "-sampled_at"], name="agentsample_series")
        ]

    def __str__(self) -> str:
        suffix = f"/{self.target}" if self.target else ""
        return f"{self.agent}{suffix}={self.state}"


class AgentSwitch(models.Model):
    """An agent turned on or off at runtime (`PATCH /api/manage/agents/{name}`). No row: on.

    Read with the routing configuration (`routing.config.cache`), whose version every save
    bumps: a disabled agent is not sampled and reads as unknown in the snapshot."""

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}={'on' if self.enabled else 'off'}"
