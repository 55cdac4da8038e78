"""The routing configuration as frozen values: the model registry and every policy.

Loaded from the database once per configuration version and kept in process memory; the version
lives in the shared cache and changes whenever a provider, model or policy row changes (see
`routing.apps`), so every process reloads after an edit and a warm decision reads no table.
Without Redis (`make run`) the cache is each process's own memory, so the version is kept in a
file under `ORCHESTRATOR_VAR_DIR` instead, which every process of the host reads: an edit made
by `manage.py config_import` beside a running server reaches it within `SHARED_TTL_S` too.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.dependencies import REDIS_AWAY
from providers.models import LLMModel
from routing.engine import DEFAULT_TIER_LADDER
from routing.engine.values import (
    BalanceSpec,
    ModelSpec,
    PolicySpec,
    RegistrySnapshot,
    RoutingError,
    RuleSpec,
    StateRuleSpec,
)
from routing.models import AgentSwitch, RoutingPolicy
from routing.privacy import PrivacySpec
from routing.router.ladder import knob_from

VERSION_KEY = "routing:config-version"
SNAPSHOT_KEY = "routing:agent-snapshot"
# How long a process trusts what it last read from the shared cache: a configuration edit or a
# new agent snapshot reaches every other process within this time, and a warm decision usually
# makes no network round trip at all. 1 s deployed; the test suite's servers use 0.1 s
# (orchestrator_site/test_settings.py) so that a test's edit reaches its live server at once.
SHARED_TTL_S = float(getattr(settings, "ORCHESTRATOR_SHARED_TTL_S", 1.0))
# A write that bypasses model signals (queryset.update) is picked up after this long at worst.
MAX_AGE_S = 300.0

BUILTIN_POLICY = PolicySpec(
    name="builtin",
    tier_ladder=DEFAULT_TIER_LADDER,
    state_rules=(
        StateRuleSpec("resources", "CRITICAL", "prefer_cloud"),
        StateRuleSpec("connectivity", "DISCONNECTED", "local_only"),
        StateRuleSpec("connectivity", "DEGRADED", "smaller_cloud_or_local"),
        StateRuleSpec("budget", "budget_critical", "free_only"),
    ),
)


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """One configuration version as the engine reads it: the registry and every policy, frozen
    (the YAML file that edits them is `routing.config.document`)."""

    version: str
    registry: RegistrySnapshot
    policies: dict[str, PolicySpec]
    default_policy: str
    thresholds: dict[str, Any]
    policy_agents: tuple[str, ...]
    cloud_targets: tuple[tuple[str, str], ...]
    loaded_at: float
    # Agents switched off at runtime (`AgentSwitch`): not sampled, unknown in the snapshot.
    disabled_agents: frozenset[str] = frozenset()

    def policy(self, name: str | None) -> PolicySpec:
        key = name or self.default_policy
        if key not in self.policies:
            raise RoutingError(f"unknown routing policy {key!r}")
        return self.policies[key]


@dataclass(frozen=True, slots=True)
class SharedState:
    version: str
    snapshot: dict[str, Any] | None
    read_at: float


_lock = threading.Lock()
_memo: ConfigSnapshot | None = None
_shared: SharedState | None = None


def shared_forget() -> None:
    """Make this process read the shared cache again on its next decision."""
    global _shared
    _shared = None


def routing_config_changed() -> None:
    """Make every process reload the configuration (this one at once, others within 1 s)."""
    if settings.REDIS_URL:
        cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    else:
        _version_file_write(uuid.uuid4().hex)
    shared_forget()


def version_file() -> Path:
    """Where the configuration version lives when there is no shared cache to keep it."""
    return Path(settings.VAR_DIR) / "routing-config-version"


def _version_file_write(version: str) -> None:
    path = version_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a reader sees the old version or the new one, never half.
    staged = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    staged.write_text(version)
    os.replace(staged, path)


def _version_file_read() -> str:
    try:
        return version_file().read_text().strip() or _version_file_start()
    except FileNotFoundError:
        return _version_file_start()


def _version_file_start() -> str:
    _version_file_write(uuid.uuid4().hex)
    return version_file().read_text().strip()


def shared_read() -> SharedState:
    """The configuration version and the published agent snapshot, in one round trip."""
    global _shared
    state = _shared
    if state is not None and time.monotonic() - state.read_at < SHARED_TTL_S:
        return state
    if not settings.REDIS_URL:
        # One process's memory is no shared cache: the version comes from the host's file.
        _shared = SharedState(_version_file_read(), cache.get(SNAPSHOT_KEY), time.monotonic())
        return _shared
    try:
        found = cache.get_many([VERSION_KEY, SNAPSHOT_KEY])
        version = found.get(VERSION_KEY)
        if version is None:
            cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            version = cache.get(VERSION_KEY)
    except REDIS_AWAY:
        if state is None:
            raise
        # Fails open on what was last read (docs/guards.md); asked again after SHARED_TTL_S.
        _shared = SharedState(state.version, state.snapshot, time.monotonic())
        return _shared
    _shared = SharedState(str(version), found.get(SNAPSHOT_KEY), time.monotonic())
    return _shared


def routing_config_get(shared: SharedState | None = None) -> ConfigSnapshot:
    global _memo
    version = (shared or shared_read()).version
    memo = _memo
    if memo and memo.version == version and time.monotonic() - memo.loaded_at < MAX_AGE_S:
        return memo
    with _lock:
        _memo = _load(version)
        return _memo


def _load(version: str) -> ConfigSnapshot:
    rows = LLMModel.objects.select_related("provider").order_by("id")
    models = tuple(
        ModelSpec(
            id=m.id,
            provider_name=m.provider.name,
            provider_kind=m.provider.kind,
            name=m.name,
            locality=m.provider.locality,
            tier=m.tier,
            input_price_per_mtok_usd=m.input_price_per_mtok_usd,
            output_price_per_mtok_usd=m.output_price_per_mtok_usd,
            cached_input_price_per_mtok_usd=m.cached_input_price_per_mtok_usd,
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            task_strengths=tuple(str(s) for s in (m.task_strengths or [])),
            accepts_images=m.accepts_images,
            accepts_tools=m.accepts_tools,
            accepts_json_output=m.accepts_json_output,
            embedding_dimensions=m.embedding_dimensions,
            answers_chat=m.answers_chat,
            enabled=m.enabled and m.provider.enabled,
            provider_enabled=m.provider.enabled,
            is_baseline=m.is_baseline,
        )
        for m in rows
    )
    cloud_targets = tuple(
        sorted(
            {
                (m.provider.name, m.provider.base_url)
                for m in rows
                if m.provider.enabled and m.provider.locality == "cloud"
            }
        )
    )
    policies: dict[str, PolicySpec] = {}
    default_name, thresholds, agents = BUILTIN_POLICY.name, {}, ()
    queryset = RoutingPolicy.objects.prefetch_related("rules__fallbacks", "state_rules")
    for policy in queryset:
        policies[policy.name] = policy_spec(policy)
        if policy.is_default:
            default_name = policy.name
            thresholds = dict(policy.thresholds or {})
            agents = tuple(policy.agents or ())
    if default_name == BUILTIN_POLICY.name:
        policies[BUILTIN_POLICY.name] = BUILTIN_POLICY
    return ConfigSnapshot(
        version=version,
        registry=RegistrySnapshot.build(models),
        policies=policies,
        default_policy=default_name,
        thresholds=thresholds,
        policy_agents=agents,
        cloud_targets=cloud_targets,
        loaded_at=time.monotonic(),
        disabled_agents=frozenset(
            AgentSwitch.objects.filter(enabled=False).values_list("name", flat=True)
        ),
    )


def policy_spec(policy: RoutingPolicy) -> PolicySpec:
    ladder = {k: tuple(v) for k, v in (policy.tier_ladder or {}).items()}
    return PolicySpec(
        name=policy.name,
        router=knob_from(policy.router),
        balance=BalanceSpec.of(policy.router),
        privacy=PrivacySpec.of(policy.router),
        tier_ladder={**DEFAULT_TIER_LADDER, **ladder},
        rules=tuple(
            RuleSpec(
                task_type=rule.task_type,
                complexity=rule.complexity,
                primary_id=rule.primary_id,
                fallback_ids=tuple(f.model_id for f in rule.fallbacks.all()),
                tiers=tuple(rule.tiers or ()),
            )
            for rule in policy.rules.all()
        ),
        state_rules=tuple(
            StateRuleSpec(s.agent, s.state, s.action, s.target) for s in policy.state_rules.all()
        ),
        sticky_sessions=policy.sticky_sessions,
        response_cache=policy.response_cache,
    )
