"""The providers and their models in a configuration file: read (kind, URL, locality, the name
of the environment variable that holds the key, and each model's tier, window and prices),
checked (no provider or model twice, one baseline at most), applied (created or updated, the
other baselines cleared) and exported. Prices are kept as written, so 0.1 stays exactly 0.1.
"""

from __future__ import annotations

from typing import Any

import yaml

from providers.models import LLMModel, Provider
from routing.config.base import (
    ApplyReport,
    Located,
    Reader,
    price_text,
    row_save,
    row_sync,
)
from routing.engine.taxonomy import TASK_TYPES, TIERS

PRICE_KEYS = {
    "input": "input_price_per_mtok_usd",
    "output": "output_price_per_mtok_usd",
    "cached_input": "cached_input_price_per_mtok_usd",
}


def provider_parse(r: Reader, node: yaml.Node) -> Located | None:
    items = r.mapping(
        node,
        "provider",
        ("name", "kind", "base_url", "locality"),
        ("credential_env", "enabled", "models"),
    )
    if items is None:
        return None
    name = r.typed(items.get("name"), "provider name", str, "")
    where = f"provider {name!r}"
    data = {
        "name": name,
        "kind": r.choice(items.get("kind"), f"{where} kind", tuple(Provider.Kind.values)),
        "base_url": r.typed(items.get("base_url"), f"{where} base_url", str),
        "locality": r.choice(
            items.get("locality"), f"{where} locality", tuple(Provider.Locality.values)
        ),
        "credential_env": r.typed(items.get("credential_env"), f"{where} credential_env", str, ""),
        "enabled": r.typed(items.get("enabled"), f"{where} enabled", bool, True),
        "models": [
            m
            for m in (
                model_parse(r, n, name) for n in r.sequence(items.get("models"), f"{where} models")
            )
            if m
        ],
    }
    return Located(node, data)


def model_parse(r: Reader, node: yaml.Node, provider: str) -> Located | None:
    items = r.mapping(
        node,
        "model",
        ("name", "tier"),
        (
            "display_name",
            "context_window",
            "max_output_tokens",
            "prices",
            "task_strengths",
            "accepts_images",
            "accepts_tools",
            "accepts_json_output",
            "embedding_dimensions",
            "answers_chat",
            "enabled",
            "is_baseline",
        ),
    )
    if items is None:
        return None
    name = r.typed(items.get("name"), "model name", str, "")
    where = f"model {provider}:{name}"
    data: dict[str, Any] = {
        "name": name,
        "display_name": r.typed(items.get("display_name"), f"{where} display_name", str, ""),
        "tier": r.choice(items.get("tier"), f"{where} tier", TIERS),
        "context_window": r.typed(
            items.get("context_window"), f"{where} context_window", int, 8192
        ),
        "max_output_tokens": r.typed(
            items.get("max_output_tokens"), f"{where} max_output_tokens", int, 4096
        ),
        "enabled": r.typed(items.get("enabled"), f"{where} enabled", bool, True),
        "is_baseline": r.typed(items.get("is_baseline"), f"{where} is_baseline", bool, False),
        "accepts_images": r.typed(
            items.get("accepts_images"), f"{where} accepts_images", bool, False
        ),
        "accepts_tools": r.typed(items.get("accepts_tools"), f"{where} accepts_tools", bool, False),
        "accepts_json_output": r.typed(
            items.get("accepts_json_output"), f"{where} accepts_json_output", bool, False
        ),
        "answers_chat": r.typed(items.get("answers_chat"), f"{where} answers_chat", bool, True),
        "embedding_dimensions": r.typed(
            items.get("embedding_dimensions"), f"{where} embedding_dimensions", int, None
        ),
        "task_strengths": [],
    }
    for key in ("context_window", "max_output_tokens"):
        if data[key] < 1 and key in items:
            r.error(items[key], f"{where} {key} must be >= 1")
    for strength_node in r.sequence(items.get("task_strengths"), f"{where} task_strengths"):
        strength = r.choice(strength_node, f"{where} task_strengths", TASK_TYPES)
        if strength:
            data["task_strengths"].append(strength)
    prices: dict[str, yaml.Node] = {}
    if "prices" in items:
        prices = r.mapping(items["prices"], f"{where} prices", (), tuple(PRICE_KEYS)) or {}
    for key, field_name in PRICE_KEYS.items():
        data[field_name] = r.price(prices.get(key), f"{where} price {key}")
    return Located(node, data)


def providers_check(r: Reader, providers: list[Located]) -> None:
    names: set[str] = set()
    baselines = []
    for provider in providers:
        if provider.data["name"] in names:
            r.error(provider.node, f"provider {provider.data['name']!r} is listed twice")
        names.add(provider.data["name"])
        seen: set[str] = set()
        for model in provider.data["models"]:
            if model.data["name"] in seen:
                r.error(
                    model.node,
                    f"model {provider.data['name']}:{model.data['name']} is listed twice",
                )
            seen.add(model.data["name"])
            if model.data["is_baseline"]:
                baselines.append(model)
    for extra in baselines[1:]:
        r.error(extra.node, "only one model can be the baseline")


def providers_apply(providers: list[Located], report: ApplyReport) -> dict[str, LLMModel]:
    if any(m.data["is_baseline"] for p in providers for m in p.data["models"]):
        names = {
            (p.data["name"], m.data["name"])
            for p in providers
            for m in p.data["models"]
            if m.data["is_baseline"]
        }
        for other in LLMModel.objects.filter(is_baseline=True).select_related("provider"):
            if (other.provider.name, other.name) not in names:
                other.is_baseline = False
                other.save(update_fields=["is_baseline"])
    for located in providers:
        data = located.data
        fields = {k: data[k] for k in ("kind", "base_url", "locality", "credential_env", "enabled")}
        provider = Provider.objects.filter(name=data["name"]).first()
        label = f"provider {data['name']}"
        if provider is not None and provider.enabled != fields["enabled"]:
            # A configuration that turns it on or off is an explicit choice, as in the admin.
            fields["follows_credential_env"] = False
        if provider is None:
            provider = Provider(name=data["name"], **fields)
            row_save(provider, located.node, label)
            report.created.append(label)
        elif row_sync(provider, fields):
            row_save(provider, located.node, label)
            report.updated.append(label)
        else:
            report.unchanged.append(label)
        for model_located in data["models"]:
            values = {k: v for k, v in model_located.data.items() if k != "name"}
            model = LLMModel.objects.filter(
                provider=provider, name=model_located.data["name"]
            ).first()
            label = f"model {provider.name}:{model_located.data['name']}"
            if model is None:
                model = LLMModel(provider=provider, name=model_located.data["name"], **values)
                row_save(model, model_located.node, label)
                report.created.append(label)
            elif row_sync(model, values):
                row_save(model, model_located.node, label)
                report.updated.append(label)
            else:
                report.unchanged.append(label)
    return {f"{m.provider.name}:{m.name}": m for m in LLMModel.objects.select_related("provider")}


def provider_export(provider: Provider) -> dict[str, Any]:
    """A provider and its models (prefetched) as the file writes them; never a credential."""
    entry: dict[str, Any] = {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "locality": provider.locality,
    }
    if provider.credential_env:
        entry["credential_env"] = provider.credential_env
    entry["enabled"] = provider.enabled
    models = []
    for model in sorted(provider.models.all(), key=lambda m: m.name):
        item: dict[str, Any] = {"name": model.name, "tier": model.tier}
        if model.display_name:
            item["display_name"] = model.display_name
        item["context_window"] = model.context_window
        item["max_output_tokens"] = model.max_output_tokens
        item["prices"] = {key: price_text(getattr(model, f)) for key, f in PRICE_KEYS.items()}
        if model.task_strengths:
            item["task_strengths"] = list(model.task_strengths)
        item["enabled"] = model.enabled
        if model.accepts_images:
            item["accepts_images"] = True
        if model.accepts_tools:
            item["accepts_tools"] = True
        if model.accepts_json_output:
            item["accepts_json_output"] = True
        if model.embedding_dimensions is not None:
            item["embedding_dimensions"] = model.embedding_dimensions
        if not model.answers_chat:
            item["answers_chat"] = False
        if model.is_baseline:
            item["is_baseline"] = True
        models.append(item)
    if models:
        entry["models"] = models
    return entry
