from __future__ import annotations

import os
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

BASELINE_UNIQUE_MESSAGE = "Only one model can be the baseline."
MODEL_NAME_UNIQUE_MESSAGE = "This provider already has a model with that name."


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible server"
        ANTHROPIC = "anthropic", "Anthropic"
        GEMINI = "gemini", "Google Gemini"
        OLLAMA = "ollama", "Ollama"

    class Locality(models.TextChoices):
        LOCAL = "local", "Local"
        CLOUD = "cloud", "Cloud"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Not checked yet"
        HEALTHY = "healthy", "Healthy"
        DOWN = "down", "Down"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.URLField(max_length=500)
    locality = models.CharField(max_length=8, choices=Locality.choices)
    credential_env = models.CharField(
        max_length=128,
        blank=True,
        help_text="Name of the environment variable that holds the API key (preferred).",
    )
    credential_encrypted = models.TextField(
        blank=True, editable=False, help_text="API key encrypted at rest; never shown back."
    )
    enabled = models.BooleanField(default=True)
    follows_credential_env = models.BooleanField(
        "follows its key",
        default=False,
        help_text="On every start, enabled when its environment variable is set and disabled "
        "when it is not (the demo configuration's cloud providers start this way). Turning the "
        "provider on or off by hand clears it.",
    )
    connect_timeout_s = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    read_timeout_s = models.FloatField(default=120.0, validators=[MinValueValidator(0.1)])
    health_status = models.CharField(
        max_length=8, choices=Health.choices, default=Health.UNKNOWN, editable=False
    )
    health_latency_ms = models.PositiveIntegerField(null=True, blank=True, editable=False)
    health_error = models.CharField(max_length=500, blank=True, editable=False)
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def credential_state(self) -> str:
        """What may be shown about the credential: its source and whether it is set, never
        its value."""
        if self.credential_encrypted:
            return "set (stored encrypted)"
        if self.credential_env:
            present = "set" if os.environ.get(self.credential_env) else "not set"
            return f"{present} (environment variable {self.credential_env})"
        return "not set"


class LLMModel(models.Model):
    class Tier(models.TextChoices):
        SMALL_LOCAL = "small_local", "Small local"
        LARGE_LOCAL = "large_local", "Larger local"
        STANDARD = "standard", "Standard cloud"
        PREMIUM = "premium", "Premium cloud"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200, help_text="The model id the provider's API expects.")
    display_name = models.CharField(max_length=200, blank=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    context_window = models.PositiveIntegerField(default=8192, validators=[MinValueValidator(1)])
    max_output_tokens = models.PositiveIntegerField(default=4096, validators=[MinValueValidator(1)])
    input_price_per_mtok_usd = models.DecimalField(
        "input price (USD / 1M tokens)",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Blank: unknown price (costs are recorded as unknown, never 0). 0: free.",
    )
    output_price_per_mtok_usd = models.DecimalField(
        "output price (USD / 1M tokens)",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Blank: unknown price (costs are recorded as unknown, never 0). 0: free.",
    )
    cached_input_price_per_mtok_usd = models.DecimalField(
        "cached input price (USD / 1M tokens)",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Blank: cached input is billed at the input price.",
    )
    task_strengths = models.JSONField(default=list, blank=True)
    accepts_images = models.BooleanField(
        default=False,
        help_text="The model reads images in a message (vision). Requests that carry images are "
        "routed only to such models.",
    )
    accepts_tools = models.BooleanField(
        default=False,
        help_text="The model calls tools (functions) its provider's protocol carries. Requests "
        "that offer tools or carry tool calls are routed only to such models.",
    )
    accepts_json_output = models.BooleanField(
        default=False,
        help_text="The model answers in JSON on request (response_format json_object or "
        "json_schema). Requests that ask for a JSON answer are routed only to such models.",
    )
    embedding_dimensions = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Blank for chat models. Set: the model answers /v1/embeddings with vectors of "
        "this length, and embeddings are routed only to such models.",
    )
    answers_chat = models.BooleanField(
        default=True,
        help_text="The model answers chat and text completions. Off for embedding-only models, "
        "which chat routing never picks.",
    )
    enabled = models.BooleanField(default=True)
    is_baseline = models.BooleanField(
        default=False, help_text="The premium model that savings are measured against."
    )

    class Meta:
        ordering = ["provider__name", "name"]
        verbose_name = "model"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "name"], name="llmmodel_unique_per_provider"
            ),
            models.UniqueConstraint(
                fields=["is_baseline"],
                condition=Q(is_baseline=True),
                name="llmmodel_single_baseline",
                violation_error_message=BASELINE_UNIQUE_MESSAGE,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}:{self.name}"

    @property
    def label(self) -> str:
        return self.display_name or self.name
