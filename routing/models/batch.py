from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Batch(models.Model):
    """Many native-API tasks submitted at once and run by Celery workers."""

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    api_key = models.ForeignKey(
        "routing.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    priority = models.PositiveSmallIntegerField(default=5)
    total = models.PositiveIntegerField()
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.id} ({self.succeeded + self.failed}/{self.total})"

    @property
    def state(self) -> str:
        return self.State.DONE if self.succeeded + self.failed >= self.total else self.State.RUNNING


class BatchItem(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        DEAD = "dead", "Failed after retries (dead-lettered)"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    task = models.JSONField(help_text="The execute request, as submitted.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    request_id = models.UUIDField(null=True, blank=True, help_text="The last attempt's log row.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="batchitem_unique_index")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}#{self.index} {self.state}"


class DeadLetter(models.Model):
    """A batch item that failed after its retries; the admin can send it back to the queue."""

    item = models.OneToOneField(BatchItem, on_delete=models.CASCADE, related_name="dead_letter")
    error_code = models.CharField(max_length=32)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    retried_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dead letter {self.item} {self.error_code}"
