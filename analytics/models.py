from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class RequestLog(models.Model):
    """One row per request, whatever its outcome. Written only by `analytics.services`."""

    class Status(models.TextChoices):
        SUCCESS = "success"
        PARTIAL = "partial", "Partial (failed mid-stream)"
        ERROR = "error"
        CANCELLED = "cancelled", "Cancelled by client"
        RATE_LIMITED = "rate_limited"
        BUDGET_REFUSED = "budget_refused"
        INVALID = "invalid", "Invalid request"

    class CostState(models.TextChoices):
        REPORTED = "reported", "Reported usage"
        ESTIMATED = "estimated", "Estimated (tokens counted locally)"
        UNKNOWN_PRICE = "unknown_price", "Unknown price"
        NONE = "none", "No model called"

    class EntryPoint(models.TextChoices):
        CHAT = "chat"
        OPENAI = "openai", "OpenAI-compatible API"
        NATIVE = "native", "Native API"
        BATCH = "batch"

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(db_index=True)
    entry_point = models.CharField(max_length=16, choices=EntryPoint.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Ids only: analytics sits below routing and chat and never imports them.
    api_key_id = models.BigIntegerField(null=True, blank=True)
    conversation_id = models.BigIntegerField(null=True, blank=True)
    session_id = models.CharField(max_length=128, blank=True)
    task_type = models.CharField(max_length=32, blank=True)
    complexity = models.CharField(max_length=16, blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(
        "providers.LLMModel", null=True, blank=True, on_delete=models.SET_NULL
    )
    model_name = models.CharField(max_length=200, blank=True)
    provider_name = models.CharField(max_length=64, blank=True)
    locality = models.CharField(max_length=8, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_code = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    cost_state = models.CharField(max_length=16, choices=CostState.choices)
    baseline_cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    fallbacks = models.PositiveSmallIntegerField(default=0)
    cache_hit = models.BooleanField(default=False)
    decision_trace = models.JSONField(default=dict, blank=True)
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["api_key_id", "created_at"], name="reqlog_key_time"),
            models.Index(fields=["user", "created_at"], name="reqlog_user_time"),
            models.Index(fields=["model", "created_at"], name="reqlog_model_time"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.model_name or '-'} {self.status}"


class RequestPayload(models.Model):
    """Prompt and answer text, kept apart so the log stays slim; only when a setting allows it."""

    request = models.OneToOneField(
        RequestLog, on_delete=models.CASCADE, primary_key=True, related_name="payload"
    )
    prompt = models.TextField()
    response = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"payload of request {self.request_id}"
