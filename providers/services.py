"""Writes to the registry: credentials, health, imported models."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from providers.adapters.http_client import upstream_pool_close
from providers.adapters.registry import adapter_for
from providers.adapters.types import Endpoint, ProviderError
from providers.credentials import ENV_VAR_NAME, credential_encrypt, secret_redact
from providers.models import LLMModel, Provider
from providers.selectors import provider_endpoint

logger = logging.getLogger(__name__)

# A probe lists models; anything slower than this is as good as down for routing.
HEALTH_PROBE_READ_TIMEOUT_S = 10.0
HEALTH_ERROR_MAX_CHARS = 500
# A local server answers in milliseconds or not at all; its probe runs where a page waits on it.
LOCAL_PROBE_TIMEOUT_S = 2.0
LOCAL_PROBE_MAX_AGE_S = 30.0
LOCAL_PROBE_LEASE_KEY = "providers:local-probe:{pk}"


class CredentialInvalid(ValueError):
    """A credential that cannot be stored as given. The message never repeats the input."""


@dataclass(frozen=True)
class HealthCheck:
    provider_id: int
    status: str
    latency_ms: int | None
    error: str
    model_count: int
    checked_at: datetime


@dataclass(frozen=True)
class ModelsImport:
    created: tuple[str, ...]
    existing: tuple[str, ...]


def provider_credential_set(*, provider: Provider, env_var: str = "", secret: str = "") -> None:
    """Point `provider` at an environment variable (preferred) or store `secret` encrypted;
    with neither, the provider has no credential. One source replaces the other.

    Raises `ImproperlyConfigured` when a secret is given and `CREDENTIALS_KEY` is unusable.
    """
    if env_var and secret:
        raise CredentialInvalid(
            "Give either an environment variable name or an API key to store, not both."
        )
    if env_var and not ENV_VAR_NAME.fullmatch(env_var):
        raise CredentialInvalid(
            "An environment variable name has only letters, digits and underscores and does "
            "not start with a digit (is this the key itself? store it as the API key instead)."
        )
    provider.credential_encrypted = credential_encrypt(secret) if secret else ""
    provider.credential_env = env_var
    provider.save(update_fields=["credential_env", "credential_encrypted", "updated_at"])
    source = "encrypted" if secret else "environment" if env_var else "none"
    logger.info(
        "provider credential set", extra={"provider": provider.name, "credential_source": source}
    )


def provider_health_check(*, provider: Provider, timeout_s: float | None = None) -> HealthCheck:
    """Probe `provider` by listing its models; record and return status, latency, error.
    `timeout_s` caps both the connect and the read timeout.

    Synchronous (admin actions, Celery); async code calls it through `sync_to_async`.
    """
    _refuse_running_loop("provider_health_check")
    latency_ms: int | None = None
    model_count = 0
    secret: str | None = None
    try:
        endpoint = provider_endpoint(
            provider, read_timeout_s=min(HEALTH_PROBE_READ_TIMEOUT_S, timeout_s or math.inf)
        )
        if timeout_s is not None:
            endpoint = replace(
                endpoint, connect_timeout_s=min(endpoint.connect_timeout_s, timeout_s)
            )
        secret = endpoint.api_key
        started = time.perf_counter()
        try:
            model_count = len(_models_list_blocking(provider.kind, endpoint))
        finally:
            latency_ms = round((time.perf_counter() - started) * 1000)
        status, error = Provider.Health.HEALTHY, ""
    except Exception as failure:  # a probe reports every failure, expected or not, as "down"
        status, error = Provider.Health.DOWN, _error_text(failure, secret)

    checked_at = timezone.now()
    provider.health_status = status
    provider.health_latency_ms = latency_ms
    provider.health_error = error
    provider.health_checked_at = checked_at
    # Not save(): a probe must not overwrite a concurrent edit of the provider's settings.
    Provider.objects.filter(pk=provider.pk).update(
        health_status=status,
        health_latency_ms=latency_ms,
        health_error=error,
        health_checked_at=checked_at,
    )
    log = logger.info if status == Provider.Health.HEALTHY else logger.warning
    log(
        "provider health checked",
        extra={
            "provider": provider.name,
            "health_status": status,
            "latency_ms": latency_ms,
            "error": error,
        },
    )
    return HealthCheck(
        provider_id=provider.pk,
        status=status,
        latency_ms=latency_ms,
        error=error,
        model_count=model_count,
        checked_at=checked_at,
    )


def local_health_refresh(
    *,
    now: datetime,
    max_age_s: float = LOCAL_PROBE_MAX_AGE_S,
    timeout_s: float = LOCAL_PROBE_TIMEOUT_S,
) -> list[HealthCheck]:
    """Probe each enabled local provider (llama.cpp server, Ollama) whose last result is older
    than `max_age_s` or missing, with a short timeout; the stored result is the cache.

    Cloud providers are left to the beat task: their probes are slow and cost requests. A lease
    per provider keeps concurrent callers (page loads, the web process's loop) from probing the
    same server at once; without a cache the probe simply runs.
    """
    stale = Provider.objects.filter(
        Q(health_checked_at__isnull=True)
        | Q(health_checked_at__lt=now - timedelta(seconds=max_age_s)),
        enabled=True,
        locality=Provider.Locality.LOCAL,
    ).order_by("pk")
    checks = []
    for provider in stale:
        key = LOCAL_PROBE_LEASE_KEY.format(pk=provider.pk)
        try:
            leased = cache.add(key, 1, timeout=math.ceil(3 * timeout_s))
        except Exception:  # a cache outage must not leave the local model unprobed
            leased = True
        if not leased:
            continue
        try:
            checks.append(provider_health_check(provider=provider, timeout_s=timeout_s))
        finally:
            try:
                cache.delete(key)
            except Exception:
                logger.warning("local probe lease not released", extra={"provider": provider.name})
    return checks


def provider_models_import(*, provider: Provider) -> ModelsImport:
    """Create an `LLMModel` for every model the provider lists that the registry lacks.

    New rows have unknown prices (NULL) and start disabled, so nothing unpriced is routed
    to before an admin has looked at it. Raises the adapter's `ProviderError` on failure,
    its message free of the API key.
    """
    _refuse_running_loop("provider_models_import")
    endpoint = provider_endpoint(provider, read_timeout_s=HEALTH_PROBE_READ_TIMEOUT_S)
    listed = sorted(set(_models_list_blocking(provider.kind, endpoint)))
    tier = (
        LLMModel.Tier.SMALL_LOCAL
        if provider.locality == Provider.Locality.LOCAL
        else LLMModel.Tier.STANDARD
    )
    with transaction.atomic():
        existing = set(
            LLMModel.objects.filter(provider=provider, name__in=listed).values_list(
                "name", flat=True
            )
        )
        missing = [name for name in listed if name not in existing]
        # ignore_conflicts: a concurrent import of the same provider is not an error.
        LLMModel.objects.bulk_create(
            [LLMModel(provider=provider, name=name, tier=tier, enabled=False) for name in missing],
            ignore_conflicts=True,
        )
    logger.info(
        "provider models imported",
        extra={
            "provider": provider.name,
            "models_created": len(missing),
            "models_existing": len(existing),
        },
    )
    return ModelsImport(created=tuple(missing), existing=tuple(sorted(existing)))


def _refuse_running_loop(service: str) -> None:
    # Inside a running loop asyncio.run() would fail, and the probe would record that
    # programming error as the provider being down.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{service} blocks; from async code call it through sync_to_async")


def _models_list_blocking(kind: str, endpoint: Endpoint) -> list[str]:
    async def listed() -> list[str]:
        try:
            return await adapter_for(kind).list_models(endpoint)
        finally:
            # The shared pool belongs to this short-lived loop; close it with the loop.
            await upstream_pool_close()

    return asyncio.run(listed())


def _error_text(failure: Exception, secret: str | None) -> str:
    if isinstance(failure, ProviderError):
        message = failure.message
    else:
        message = f"{type(failure).__name__}: {failure}".rstrip(": ")
    return secret_redact(message, secret)[:HEALTH_ERROR_MAX_CHARS]
