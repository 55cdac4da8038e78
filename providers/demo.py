"""The demo registry a fresh install starts with: the bundled local model, plus cloud providers
that are enabled only when their API key is in the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from providers import local_model
from providers.models import LLMModel, Provider


@dataclass(frozen=True)
class DemoModel:
    name: str
    display_name: str
    tier: str
    context_window: int
    max_output_tokens: int
    input_price: Decimal
    output_price: Decimal
    cached_price: Decimal | None
    strengths: tuple[str, ...]
    is_baseline: bool = False
    embedding_dimensions: int | None = None


@dataclass(frozen=True)
class DemoProvider:
    name: str
    kind: str
    base_url: str
    locality: str
    credential_env: str
    models: tuple[DemoModel, ...]


LOCAL_PROVIDER = "local-smollm2"

CLOUD_PROVIDERS = (
    DemoProvider(
        "openai",
        "openai",
        "https://api.openai.com/v1",
        "cloud",
        "OPENAI_API_KEY",
        (
            DemoModel(
                "gpt-4o",
                "GPT-4o",
                "premium",
                128000,
                16384,
                Decimal("2.50"),
                Decimal("10.00"),
                Decimal("1.25"),
                ("code", "analysis", "research"),
                True,
            ),
            DemoModel(
                "gpt-4o-mini",
                "GPT-4o mini",
                "standard",
                128000,
                16384,
                Decimal("0.15"),
                Decimal("0.60"),
                Decimal("0.075"),
                ("simple", "general", "documentation"),
            ),
        ),
    ),
    DemoProvider(
        "anthropic",
        "anthropic",
        "https://api.anthropic.com",
        "cloud",
        "ANTHROPIC_API_KEY",
        (
            DemoModel(
                "claude-sonnet-4-5",
                "Claude Sonnet 4.5",
                "premium",
                200000,
                64000,
                Decimal("3.00"),
                Decimal("15.00"),
                Decimal("0.30"),
                ("code", "long_context", "creative"),
            ),
        ),
    ),
    DemoProvider(
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com",
        "cloud",
        "GEMINI_API_KEY",
        (
            DemoModel(
                "gemini-2.5-flash",
                "Gemini 2.5 Flash",
                "standard",
                1048576,
                65536,
                Decimal("0.30"),
                Decimal("2.50"),
                Decimal("0.075"),
                ("long_context", "research", "explanation"),
            ),
        ),
    ),
)


def local_provider(base_url: str) -> DemoProvider:
    return DemoProvider(
        LOCAL_PROVIDER,
        "openai_compatible",
        base_url,
        "local",
        "",
        (
            DemoModel(
                "smollm2-135m-instruct",
                "SmolLM2 135M (bundled)",
                "small_local",
                2048,
                512,
                Decimal(0),
                Decimal(0),
                Decimal(0),
                ("simple", "general"),
                embedding_dimensions=local_model.EMBEDDING_DIMENSIONS,
            ),
        ),
    )


@transaction.atomic
def demo_registry_load(*, local_model_url: str | None) -> list[Provider]:
    """Create or update the demo providers and models; idempotent.

    Prices and flags an admin changed on an existing model are left alone; only missing rows
    are created. The local provider's URL is refreshed because its port changes per run.
    A cloud provider this creates follows its key (`follows_credential_env`): on every load it
    is enabled when its environment variable is set and disabled when it is not, until an
    admin turns it on or off by hand. Providers an admin created are never touched.
    """
    specs = list(CLOUD_PROVIDERS)
    if local_model_url:
        specs.insert(0, local_provider(local_model_url))
    loaded = []
    for spec in specs:
        has_key = not spec.credential_env or bool(os.environ.get(spec.credential_env))
        provider, created = Provider.objects.get_or_create(
            name=spec.name,
            defaults={
                "kind": spec.kind,
                "base_url": spec.base_url,
                "locality": spec.locality,
                "credential_env": spec.credential_env,
                "enabled": has_key,
                "follows_credential_env": bool(spec.credential_env),
            },
        )
        if not created and spec.locality == "local" and provider.base_url != spec.base_url:
            provider.base_url = spec.base_url
            provider.save(update_fields=["base_url", "updated_at"])
        if not created and provider.follows_credential_env and provider.credential_env:
            key_set = bool(os.environ.get(provider.credential_env))
            if provider.enabled != key_set:
                provider.enabled = key_set
                provider.save(update_fields=["enabled", "updated_at"])
        has_baseline = LLMModel.objects.filter(is_baseline=True).exists()
        for model in spec.models:
            LLMModel.objects.get_or_create(
                provider=provider,
                name=model.name,
                defaults={
                    "display_name": model.display_name,
                    "tier": model.tier,
                    "context_window": model.context_window,
                    "max_output_tokens": model.max_output_tokens,
                    "input_price_per_mtok_usd": model.input_price,
                    "output_price_per_mtok_usd": model.output_price,
                    "cached_input_price_per_mtok_usd": model.cached_price,
                    "task_strengths": list(model.strengths),
                    "is_baseline": model.is_baseline and not has_baseline,
                    "embedding_dimensions": model.embedding_dimensions,
                },
            )
        loaded.append(provider)
    return loaded
