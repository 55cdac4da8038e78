"""Runtime edits of the registry and of the agents, made through the management API
(`gateway/manage.py`): each write records one `AuditEvent` in the same transaction as the change.

Rows are written with `save()`, never `queryset.update()`, so the `post_save` signals of
`routing.apps` bump the routing configuration's version after commit, as an admin edit does:
every process routes by the change within a second. Validation is the models' own
(`full_clean()`) plus the admin form's rules (a credential is named by its environment
variable, never taken or given back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Max
from django.utils import timezone

from providers.credentials import ENV_VAR_NAME
from providers.models import BASELINE_UNIQUE_MESSAGE, LLMModel, Provider
from routing.agents.base import agent_canonical
from routing.engine.taxonomy import TASK_TYPES
from routing.engine.values import AgentState
from routing.models import AgentSample, AgentSwitch, AuditEvent
from routing.pipeline.events import Caller
from routing.sampling import agents_configured, agents_snapshot_current
from routing.validation import nul_field

PROVIDER_FIELDS = (
    "kind",
    "base_url",
    "locality",
    "credential_env",
    "enabled",
    "follows_credential_env",
    "connect_timeout_s",
    "read_timeout_s",
)
PRICE_FIELDS = (
    "input_price_per_mtok_usd",
    "output_price_per_mtok_usd",
    "cached_input_price_per_mtok_usd",
)
MODEL_FIELDS = (
    "display_name",
    "tier",
    "context_window",
    "max_output_tokens",
    *PRICE_FIELDS,
    "task_strengths",
    "accepts_images",
    "accepts_tools",
    "accepts_json_output",
    "embedding_dimensions",
    "answers_chat",
    "enabled",
    "is_baseline",
)
CREDENTIAL_ENV_MESSAGE = (
    "an environment variable name: letters, digits and underscores, not starting with a digit "
    "(the API never takes the key itself)"
)


class EditInvalid(ValueError):
    """A refused value; `errors` names each field (`{"field", "message"}`)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("Invalid field(s): " + ", ".join(e["field"] for e in errors))

    @classmethod
    def one(cls, field: str, message: str) -> EditInvalid:
        return cls([{"field": field, "message": message}])


class EditNotFound(LookupError):
    pass


class EditConflict(Exception):
    pass


def _json(value: Any) -> Any:
    """A value as the audit record keeps it: decimals as strings, lists copied."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return list(value)
    return value


def _audit(
    caller: Caller,
    action: str,
    kind: str,
    ref: str,
    changes: Mapping[str, Mapping[str, Any]],
) -> AuditEvent:
    return AuditEvent.objects.create(
        user_id=caller.user_id,
        api_key_id=caller.api_key_id,
        action=action,
        target_kind=kind,
        target_ref=ref,
        changes=dict(changes),
    )


def _created(row: models.Model, fields: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {f: {"old": None, "new": _json(getattr(row, f))} for f in fields}


def _diff(
    old: Mapping[str, Any], row: models.Model, fields: Iterable[str]
) -> dict[str, dict[str, Any]]:
    return {
        f: {"old": _json(old[f]), "new": _json(getattr(row, f))}
        for f in fields
        if old[f] != getattr(row, f)
    }


def _no_nul(values: Mapping[str, Any]) -> None:
    found = nul_field(dict(values), "")
    if found is not None:
        raise EditInvalid.one(found or "body", "must not contain a NUL character (\\u0000)")


def _full_clean(row: models.Model, *, only: Iterable[str] | None = None) -> None:
    """The model's own validation (of the fields in `only`, when given); a uniqueness
    violation is a conflict, anything else names its field."""
    exclude = None
    if only is not None:
        wanted = set(only)
        exclude = [f.name for f in row._meta.fields if f.name not in wanted]
    try:
        row.full_clean(exclude=exclude)
    except ValidationError as error:
        errors = []
        for field, found in error.error_dict.items():
            for item in found:
                message = " ".join(item.messages)
                if item.code in ("unique", "unique_together") or message == BASELINE_UNIQUE_MESSAGE:
                    raise EditConflict(message) from error
                errors.append(
                    {"field": "body" if field == NON_FIELD_ERRORS else field, "message": message}
                )
        raise EditInvalid(errors) from error


def _saved(row: models.Model) -> None:
    """Save inside the caller's transaction; a concurrent edit that broke a uniqueness rule
    after validation is a conflict (the transaction is rolled back by the caller)."""
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError as error:
        raise EditConflict(
            "The change conflicts with another row (a uniqueness rule of the registry)."
        ) from error


def _credential_env_check(values: Mapping[str, Any]) -> None:
    value = values.get("credential_env")
    if value and not ENV_VAR_NAME.fullmatch(value):
        raise EditInvalid.one("credential_env", f"must be {CREDENTIAL_ENV_MESSAGE}")


def _non_null(values: Mapping[str, Any], nullable: Iterable[str] = ()) -> None:
    allowed = set(nullable)
    errors = [
        {"field": f, "message": "must not be null"}
        for f, v in values.items()
        if v is None and f not in allowed
    ]
    if errors:
        raise EditInvalid(errors)


# Providers


def providers_list() -> list[Provider]:
    return list(Provider.objects.annotate(model_count=models.Count("models")).order_by("name"))


def provider_create(*, caller: Caller, values: Mapping[str, Any]) -> Provider:
    _no_nul(values)
    _non_null(values)
    _credential_env_check(values)
    name = values["name"]
    if Provider.objects.filter(name=name).exists():
        raise EditConflict(f"A provider named {name!r} already exists.")
    provider = Provider(**{f: values[f] for f in ("name", *PROVIDER_FIELDS) if f in values})
    _full_clean(provider)
    with transaction.atomic():
        _saved(provider)
        _audit(caller, "create", "provider", name, _created(provider, ("name", *PROVIDER_FIELDS)))
    provider.model_count = 0  # type: ignore[attr-defined]
    return provider


def provider_update(*, caller: Caller, name: str, values: Mapping[str, Any]) -> Provider:
    _no_nul(values)
    _non_null(values)
    _credential_env_check(values)
    if "\x00" in name:
        raise EditNotFound(f"No provider called {name!r}.")
    with transaction.atomic():
        provider = Provider.objects.select_for_update().filter(name=name).first()
        if provider is None:
            raise EditNotFound(f"No provider called {name!r}.")
        old = {f: getattr(provider, f) for f in PROVIDER_FIELDS}
        for field, value in values.items():
            setattr(provider, field, value)
        if provider.enabled != old["enabled"] and "follows_credential_env" not in values:
            # Turned on or off by hand, as in the admin: start-up stops following the key.
            provider.follows_credential_env = False
        changes = _diff(old, provider, PROVIDER_FIELDS)
        if (
            "credential_env" in changes
            and provider.credential_env
            and provider.credential_encrypted
        ):
            # One credential source at a time, as in the admin: naming a variable drops a
            # stored key. The record says so, and never holds the key.
            provider.credential_encrypted = ""
            changes["credential_stored"] = {"old": True, "new": False}
        if not changes:
            return _counted(provider)
        _full_clean(provider, only=changes)
        _saved(provider)
        _audit(caller, "update", "provider", name, changes)
    return _counted(provider)


def _counted(provider: Provider) -> Provider:
    provider.model_count = provider.models.count()  # type: ignore[attr-defined]
    return provider


# Models


def model_ref(model: LLMModel) -> str:
    return f"{model.provider.name}:{model.name}"


def models_list(*, provider: str | None = None, enabled: bool | None = None) -> list[LLMModel]:
    rows = LLMModel.objects.select_related("provider").order_by("provider__name", "name")
    if provider is not None:
        rows = rows.filter(provider__name=provider)
    if enabled is not None:
        rows = rows.filter(enabled=enabled)
    return list(rows)


def _model_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Prices parsed from their decimal strings, task strengths checked against the taxonomy."""
    found = dict(values)
    for field in PRICE_FIELDS:
        raw = found.get(field)
        if raw is None:
            continue
        try:
            price = Decimal(str(raw).strip())
        except InvalidOperation:
            price = None
        if price is None or not price.is_finite():
            raise EditInvalid.one(
                field, 'must be a decimal string such as "2.50", or null (unknown)'
            )
        found[field] = price
    for index, strength in enumerate(found.get("task_strengths") or ()):
        if strength not in TASK_TYPES:
            raise EditInvalid.one(
                f"task_strengths[{index}]",
                f"unknown task type {strength!r}; expected one of {', '.join(TASK_TYPES)}",
            )
    return found


def model_create(*, caller: Caller, provider: str, values: Mapping[str, Any]) -> LLMModel:
    _no_nul({"provider": provider, **values})
    _non_null(values, nullable=(*PRICE_FIELDS, "embedding_dimensions"))
    found = _model_values(values)
    owner = Provider.objects.filter(name=provider).first()
    if owner is None:
        raise EditNotFound(f"No provider called {provider!r}.")
    name = found["name"]
    ref = f"{provider}:{name}"
    if LLMModel.objects.filter(provider=owner, name=name).exists():
        raise EditConflict(f"Provider {provider!r} already has a model called {name!r} ({ref}).")
    model = LLMModel(provider=owner, **{f: found[f] for f in ("name", *MODEL_FIELDS) if f in found})
    _full_clean(model)
    _as_stored(model)
    with transaction.atomic():
        _saved(model)
        _audit(caller, "create", "model", ref, _created(model, ("name", *MODEL_FIELDS)))
    return model


def model_update(*, caller: Caller, ref: str, values: Mapping[str, Any]) -> LLMModel:
    _no_nul(values)
    _non_null(values, nullable=(*PRICE_FIELDS, "embedding_dimensions"))
    found = _model_values(values)
    provider, _, name = ref.partition(":")
    if "\x00" in ref or not name:
        raise EditNotFound(f"No model {ref!r} (give provider:name).")
    with transaction.atomic():
        model = (
            LLMModel.objects.select_for_update()
            .select_related("provider")
            .filter(provider__name=provider, name=name)
            .first()
        )
        if model is None:
            raise EditNotFound(f"No model {ref!r} (give provider:name).")
        old = {f: getattr(model, f) for f in MODEL_FIELDS}
        for field, value in found.items():
            setattr(model, field, value)
        changes = _diff(old, model, MODEL_FIELDS)
        if not changes:
            return model
        _full_clean(model, only=changes)
        # The new values as stored (a price's decimal places), in the record too.
        changes = _diff(old, _as_stored(model), MODEL_FIELDS)
        _saved(model)
        _audit(caller, "update", "model", ref, changes)
    return model


def _as_stored(model: LLMModel) -> LLMModel:
    """Prices with the column's six decimal places, as a read gives them back (exact: a
    validated price has at most six)."""
    for field in PRICE_FIELDS:
        value = getattr(model, field)
        if value is not None:
            setattr(model, field, value.quantize(Decimal("0.000001")))
    return model


# Agents


@dataclass(frozen=True)
class AgentStatus:
    name: str
    source: str
    path: str
    enabled: bool
    state: str
    reason: str
    targets: list[dict[str, str]]
    last_sampled_at: datetime | None
    per_request: bool = False


def agents_status(*, now: datetime) -> list[AgentStatus]:
    """Every agent sampling knows of, its switch and its latest state (a switched-off agent
    reads `unknown`, reason `disabled`)."""
    disabled = frozenset(AgentSwitch.objects.filter(enabled=False).values_list("name", flat=True))
    snapshot = agents_snapshot_current(now=now, disabled=disabled)
    last = dict(
        AgentSample.objects.values("agent")
        .annotate(at=Max("sampled_at"))
        .values_list("agent", "at")
    )
    found = []
    for agent in agents_configured():
        states = [s for s in snapshot.states if s.agent == agent.name]
        overall = next((s for s in states if not s.target), None) or AgentState(
            agent.name,
            "unknown",
            reason="checks each request" if agent.per_request else "no sample yet",
        )
        found.append(
            AgentStatus(
                name=agent.name,
                source=agent.source,
                path=agent.path,
                enabled=agent.name not in disabled,
                state=overall.state,
                reason=overall.reason,
                targets=[
                    {"target": s.target, "state": s.state, "reason": s.reason}
                    for s in states
                    if s.target
                ],
                last_sampled_at=last.get(agent.name),
                per_request=agent.per_request,
            )
        )
    return found


def agent_switch(*, caller: Caller, name: str, enabled: bool) -> AgentStatus:
    """Turn an agent on or off at runtime (a seed alias names the built-in agent); unknown
    names are refused."""
    name = agent_canonical(name)
    if name not in {agent.name for agent in agents_configured()}:
        raise EditNotFound(f"No agent called {name!r}.")
    with transaction.atomic():
        switch = AgentSwitch.objects.select_for_update().filter(name=name).first()
        old = switch.enabled if switch is not None else True
        if old != enabled:
            switch = switch or AgentSwitch(name=name)
            switch.enabled = enabled
            _saved(switch)
            _audit(caller, "update", "agent", name, {"enabled": {"old": old, "new": enabled}})
    return next(a for a in agents_status(now=timezone.now()) if a.name == name)


# The audit trail


def audit_events(
    *, limit: int, before: int | None = None, target_kind: str | None = None
) -> list[AuditEvent]:
    """Newest first; `before` (an event id) pages back."""
    rows = AuditEvent.objects.order_by("-id")
    if before is not None:
        rows = rows.filter(id__lt=before)
    if target_kind is not None:
        rows = rows.filter(target_kind=target_kind)
    return list(rows[:limit])
