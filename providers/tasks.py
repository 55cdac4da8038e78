from __future__ import annotations

from celery import shared_task

from providers.models import Provider
from providers.services import provider_health_check


@shared_task(name="providers.tasks.provider_health_probe", time_limit=60, soft_time_limit=45)
def provider_health_probe(provider_id: int) -> str:
    """Probe one enabled provider and record the result. Safe to repeat: each run only
    overwrites the provider's latest health."""
    provider = Provider.objects.filter(pk=provider_id, enabled=True).first()
    if provider is None:
        return "skipped"
    return provider_health_check(provider=provider).status


@shared_task(name="providers.tasks.provider_health_probe_all", time_limit=30, soft_time_limit=20)
def provider_health_probe_all() -> list[int]:
    """Fan out one probe per enabled provider, so one slow provider delays no other."""
    provider_ids = list(
        Provider.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True)
    )
    for provider_id in provider_ids:
        provider_health_probe.delay(provider_id)
    return provider_ids
