"""A user's conversations and their messages; answers link to their request log row by id."""

from __future__ import annotations

from django.conf import settings
from django.db import models

DEFAULT_TITLE = "New conversation"


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default=DEFAULT_TITLE)
    # "auto", a policy name, or "provider:model": what the gateway is asked for.
    model_choice = models.CharField(max_length=200, default="auto")
    system_prompt = models.TextField(blank=True)
    # The model that answered last; the gateway keeps it while it stays eligible.
    sticky_model = models.ForeignKey(
        "providers.LLMModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        NOTICE = "notice", "Notice (shown, never sent to a model)"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        PARTIAL = "partial", "Partial (stopped or failed mid-answer)"
        FAILED = "failed"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # analytics.RequestLog.request_id of the request that produced this answer.
    request_id = models.UUIDField(null=True, blank=True, db_index=True)
    model_ref = models.CharField(max_length=300, blank=True)
    # Answers of one multi-model comparison share a group; they never enter later history.
    compare_group = models.UUIDField(null=True, blank=True)
    badge = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role} in {self.conversation_id}"
