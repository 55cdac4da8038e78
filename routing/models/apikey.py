from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class ApiKey(models.Model):
    """A secret that lets a program call the gateway. Only a hash of it is stored.

    The key is 32 random bytes, so a single SHA-256 is the right hash: slow password hashes
    (PBKDF2, argon2) exist to make guessing low-entropy secrets expensive, and there is nothing
    to guess here; a fast, deterministic hash also lets a key be found by an indexed equality
    lookup instead of a scan that checks every row.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, db_index=True, editable=False, help_text="The key's first characters."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="api_keys",
    )
    rpm_limit = models.PositiveIntegerField(
        "requests per minute",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Blank: no limit.",
    )
    tpm_limit = models.PositiveIntegerField(
        "tokens per minute",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Blank: no limit.",
    )
    local_only = models.BooleanField(
        "local models only",
        default=False,
        help_text="Every request of this key stays on local models, or is refused "
        "(docs/routing.md, Privacy).",
    )
    enabled = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.enabled and self.revoked_at is None
