from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from analytics.buckets import LATENCY_BUCKET_EDGES_MS as LATENCY_BUCKET_EDGES_MS
from analytics.buckets import LATENCY_BUCKET_FIELDS as LATENCY_BUCKET_FIELDS


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
        ANTHROPIC = "anthropic", "Anthropic Messages API"
        OLLAMA = "ollama", "Ollama API"
        GEMINI = "gemini", "Gemini API"
        EMBEDDINGS = "embeddings", "OpenAI embeddings"
        COMPLETIONS = "completions", "OpenAI text completions"
        RESPONSES = "responses", "OpenAI Responses API"

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(db_index=True)
    entry_point = models.CharField(max_length=16, choices=EntryPoint.choices)
    # No index of its own on `user` or `model`: the (user, created_at) and (model, created_at)
    # indexes below lead with them and serve the same lookups; every request's insert would
    # otherwise update two more indexes.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_index=False,
    )
    # Ids only: analytics sits below routing and chat and never imports them.
    api_key_id = models.BigIntegerField(null=True, blank=True)
    conversation_id = models.BigIntegerField(null=True, blank=True)
    session_id = models.CharField(max_length=128, blank=True)
    # The caller's own end user and project (routing/request_metadata.py); its tags are
    # `RequestTag` rows. Defaults in the database too: bulk writers (demo data's COPY) omit them.
    end_user = models.CharField(max_length=128, blank=True, default="", db_default="")
    project = models.CharField(max_length=64, blank=True, default="", db_default="")
    task_type = models.CharField(max_length=32, blank=True)
    complexity = models.CharField(max_length=16, blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    model = models.ForeignKey(
        "providers.LLMModel", null=True, blank=True, on_delete=models.SET_NULL, db_index=False
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
    # The learned router's probability that premium was needed, and what the answer took off the
    # premium quality (analytics/quality.py); NULL when the router did not score the prompt.
    premium_probability = models.FloatField(null=True, blank=True)
    quality_loss = models.FloatField(null=True, blank=True)
    is_demo = models.BooleanField(default=False)
    # A part (or reduce step) of a plan by parts links to the plan's own row, which carries the
    # whole request's tokens and cost: reports read the plan's row and leave its parts out
    # (`parent` is set), so nothing is counted twice. No database constraint: a part's row is
    # written as soon as the part ends, before the plan's.
    parent = models.ForeignKey(
        "self",
        to_field="request_id",
        db_constraint=False,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="parts",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["api_key_id", "created_at"], name="reqlog_key_time"),
            models.Index(fields=["user", "created_at"], name="reqlog_user_time"),
            models.Index(fields=["model", "created_at"], name="reqlog_model_time"),
            models.Index(fields=["project", "created_at"], name="reqlog_project_time"),
            models.Index(fields=["end_user", "created_at"], name="reqlog_end_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.model_name or '-'} {self.status}"


class RequestTag(models.Model):
    """One free tag of one request (`tags` in a request's metadata).

    A table rather than a Postgres `ArrayField` with a GIN index: the zero-setup site runs on
    SQLite, which has neither arrays nor GIN, and a JSON list cannot be searched by an index on
    SQLite either. A row per tag is one plain B-tree lookup on both databases: `(tag,
    created_at)` answers "requests with this tag in this range" (the creation time is copied
    here so the range is read from the index, not from the log), and the breakdown by tag is an
    ordinary join and GROUP BY with the same aggregates as every other breakdown. Rows are
    written in the same statement as their log row (analytics/services.py) and deleted with it
    (retention and demo data delete through the ORM, which cascades).
    """

    request = models.ForeignKey(
        RequestLog, on_delete=models.CASCADE, related_name="tags", to_field="request_id"
    )
    tag = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "tag"], name="reqtag_request_tag"),
        ]
        indexes = [models.Index(fields=["tag", "created_at"], name="reqtag_tag_time")]

    def __str__(self) -> str:
        return f"{self.tag} on {self.request_id}"


class RequestPayload(models.Model):
    """Prompt and answer text, kept apart so the log stays slim; only when a setting allows it."""

    request = models.OneToOneField(
        RequestLog, on_delete=models.CASCADE, primary_key=True, related_name="payload"
    )
    prompt = models.TextField()
    response = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"payload of request {self.request_id}"


class RequestFeedback(models.Model):
    """A thumbs up or down on one answer; the quality part of the optimization score reads these."""

    request = models.OneToOneField(
        RequestLog, on_delete=models.CASCADE, related_name="feedback", to_field="request_id"
    )
    positive = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{'+' if self.positive else '-'} on {self.request_id}"


class RollupMetrics(models.Model):
    """The sums a rollup row keeps; see analytics/metrics.py for how each is computed."""

    requests = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    clean_successes = models.PositiveIntegerField(default=0)
    priced_requests = models.PositiveIntegerField(default=0)
    fallback_requests = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    estimated_requests = models.PositiveIntegerField(default=0)
    unknown_price_requests = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    comparable_cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    comparable_baseline_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    cache_comparable_cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    cache_comparable_baseline_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    ttft_ms_sum = models.BigIntegerField(default=0)
    ttft_count = models.PositiveIntegerField(default=0)
    latency_le_100 = models.PositiveIntegerField(default=0)
    latency_le_250 = models.PositiveIntegerField(default=0)
    latency_le_500 = models.PositiveIntegerField(default=0)
    latency_le_1000 = models.PositiveIntegerField(default=0)
    latency_le_2500 = models.PositiveIntegerField(default=0)
    latency_le_5000 = models.PositiveIntegerField(default=0)
    latency_le_10000 = models.PositiveIntegerField(default=0)
    latency_le_30000 = models.PositiveIntegerField(default=0)
    latency_gt_30000 = models.PositiveIntegerField(default=0)
    quality_loss_sum = models.FloatField(default=0)
    quality_scored = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class DailyRollup(RollupMetrics):
    """Sums of the request log per day and dimension, rebuilt whole per day (safe to re-run)."""

    day = models.DateField()
    model_id = models.BigIntegerField(null=True)
    model_name = models.CharField(max_length=200, blank=True)
    provider_name = models.CharField(max_length=64, blank=True)
    locality = models.CharField(max_length=8, blank=True)
    user_id = models.BigIntegerField(null=True)
    api_key_id = models.BigIntegerField(null=True)
    # The request's metadata project: a caller dimension, so the model folds leave it out.
    project = models.CharField(max_length=64, blank=True, default="", db_default="")
    task_type = models.CharField(max_length=32, blank=True)
    complexity = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16)
    is_demo = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["day"], name="rollup_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.model_name or '-'} {self.status}: {self.requests}"


class DailyModelRollup(RollupMetrics):
    """The same sums without the caller dimensions, folded from `DailyRollup`: what staff-wide
    reports read, a fraction of the rows."""

    day = models.DateField()
    model_id = models.BigIntegerField(null=True)
    model_name = models.CharField(max_length=200, blank=True)
    provider_name = models.CharField(max_length=64, blank=True)
    locality = models.CharField(max_length=8, blank=True)
    task_type = models.CharField(max_length=32, blank=True)
    complexity = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16)
    is_demo = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["day"], name="model_rollup_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.model_name or '-'} {self.status}: {self.requests}"


class MonthlyModelRollup(RollupMetrics):
    """`DailyModelRollup` folded per calendar month (`month` is its first day), refolded with every
    rebuild of one of its days: a staff-wide report over a long range reads whole months here and
    only the days at its edges from the daily table."""

    month = models.DateField()
    model_id = models.BigIntegerField(null=True)
    model_name = models.CharField(max_length=200, blank=True)
    provider_name = models.CharField(max_length=64, blank=True)
    locality = models.CharField(max_length=8, blank=True)
    task_type = models.CharField(max_length=32, blank=True)
    complexity = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16)
    is_demo = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["month"], name="model_rollup_month")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.model_name or '-'} {self.status}: {self.requests}"


class RollupState(models.Model):
    """Singleton: the last day whose rollup is complete. Reports read raw rows after it."""

    rolled_through = models.DateField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rolled through {self.rolled_through}"


class ExportJob(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    query = models.JSONField(default=dict, help_text="The report filter, as the page sent it.")
    kind = models.CharField(max_length=32, default="raw")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    total_rows = models.PositiveIntegerField(default=0)
    written_rows = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"export {self.pk} {self.state}"

    @property
    def progress_pct(self) -> int:
        if self.state == self.State.DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(99, self.written_rows * 100 // self.total_rows)


class StoredResponse(models.Model):
    """An answer of `POST /v1/responses` kept for its API key (`store`, true unless the request
    says otherwise): read back by `GET /v1/responses/{id}` and continued by a later request's
    `previous_response_id`. `messages` is the conversation up to this turn as chat messages
    (`{"role", "content"}`, an assistant turn's `tool_calls`, a tool message's `tool_call_id`;
    the turn's `instructions` excluded, as they do not carry over), and `response` the response
    object as it was answered (its `function_call` items are the answer's tool calls)."""

    id = models.CharField(max_length=64, primary_key=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)
    model_ref = models.CharField(max_length=255)
    messages = models.JSONField()
    output_text = models.TextField()
    response = models.JSONField()

    def __str__(self) -> str:
        return self.id
