"""The management API under /api/manage/ (staff only): register and switch providers, models
and monitoring agents at runtime, and read the audit trail of those changes.

Each operation authenticates (a staff user's API key or signed-in session; anyone else is
refused before the body is read), calls one service of `routing.registry_edits`, and shapes
the answer. Refusals use the native API's envelope: 400 `INVALID_REQUEST` naming the field,
404 for an unknown name, 409 for a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict, StrictBool, WithJsonSchema

from gateway.auth import (
    BearerKeyAuth,
    ErrorOut,
    GatewayError,
    HeaderKeyAuth,
    SessionCsrfAuth,
)
from providers.models import LLMModel, Provider
from routing.pipeline.events import Caller
from routing.registry_edits import (
    EditConflict,
    EditInvalid,
    EditNotFound,
    agent_switch,
    agents_status,
    audit_events,
    model_create,
    model_ref,
    model_update,
    models_list,
    provider_create,
    provider_update,
    providers_list,
)

STAFF_ONLY = "Staff only: a staff user's session or API key."
Seconds = Annotated[float, Field(ge=0.1, allow_inf_nan=False)]
# A positive integer column's range.
Tokens = Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]
Strengths = Annotated[list[Annotated[str, Field(max_length=32)]], Field(max_length=16)]
# A PATCH field is optional but never null (the service refuses a null, naming the field):
# its documented schema leaves null out.
BOOLEAN = WithJsonSchema({"type": "boolean"})
SECONDS = WithJsonSchema({"type": "number", "minimum": 0.1})
TOKENS = WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 2**31 - 1})
T = TypeVar("T")


class _StaffOnly:
    """Refuses a caller who is known but not staff (403) while authenticating, so a refused
    caller's body is never parsed; no credentials at all stay a 401."""

    async def __call__(self, request: HttpRequest) -> Caller | None:
        caller: Caller | None = await super().__call__(request)  # type: ignore[misc]
        if caller is not None and not caller.is_staff:
            raise GatewayError("AUTHENTICATION_FAILED", STAFF_ONLY, status=403)
        return caller


class StaffBearerKeyAuth(_StaffOnly, BearerKeyAuth):
    pass


class StaffHeaderKeyAuth(_StaffOnly, HeaderKeyAuth):
    pass


class StaffSessionCsrfAuth(_StaffOnly, SessionCsrfAuth):
    pass


router = Router(
    auth=[StaffBearerKeyAuth(), StaffHeaderKeyAuth(), StaffSessionCsrfAuth()], tags=["manage"]
)
ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 403, 503)}
WRITE_ERRORS: dict[int, Any] = {**ERRORS, 404: ErrorOut, 409: ErrorOut}


async def _call(service: Callable[..., T], **kwargs: Any) -> T:
    """Run one service off the event loop, its refusals as the API's envelope."""
    try:
        return await sync_to_async(service)(**kwargs)
    except EditInvalid as exc:
        raise GatewayError("INVALID_REQUEST", str(exc), details={"errors": exc.errors}) from exc
    except EditNotFound as exc:
        raise GatewayError("INVALID_REQUEST", str(exc), status=404) from exc
    except EditConflict as exc:
        raise GatewayError("INVALID_REQUEST", str(exc), status=409) from exc


def _caller(request: HttpRequest) -> Caller:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    return caller


class Strict(Schema):
    # An unknown field is refused, not ignored: a credential sent by mistake never lands.
    model_config = ConfigDict(extra="forbid")


# Providers

KINDS: dict[str, Any] = {"enum": list(Provider.Kind.values)}
LOCALITIES: dict[str, Any] = {"enum": list(Provider.Locality.values)}
CREDENTIAL_ENV = (
    "The name of the environment variable holding the API key (never the key itself; "
    "the API neither takes nor returns one)."
)


class ProviderOut(Schema):
    name: str
    kind: str
    base_url: str
    locality: str
    credential_env: str
    credential_state: str = Field(..., description="Its source and whether it is set.")
    enabled: bool
    follows_credential_env: bool
    connect_timeout_s: float
    read_timeout_s: float
    health_status: str
    health_checked_at: datetime | None
    model_count: int
    created_at: datetime
    updated_at: datetime


class ProvidersOut(Schema):
    providers: list[ProviderOut]


class ProviderIn(Strict):
    name: str = Field(..., max_length=64, description="A slug: letters, digits, - and _.")
    kind: str = Field(..., max_length=32, json_schema_extra=KINDS)
    base_url: str = Field(..., max_length=500, description="With its scheme: https://…")
    locality: str = Field(..., max_length=8, json_schema_extra=LOCALITIES)
    credential_env: str = Field("", max_length=128, description=CREDENTIAL_ENV)
    enabled: bool = Field(True, strict=True)
    follows_credential_env: bool = Field(False, strict=True)
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 120.0


class ProviderPatch(Strict):
    """Only the fields given change; the name is the provider's identity and stays."""

    kind: Annotated[str | None, WithJsonSchema({"type": "string", **KINDS})] = None
    base_url: Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 500})] = None
    locality: Annotated[str | None, WithJsonSchema({"type": "string", **LOCALITIES})] = None
    credential_env: Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 128})] = (
        Field(None, description=CREDENTIAL_ENV)
    )
    enabled: Annotated[StrictBool | None, BOOLEAN] = Field(
        None, description="Turning it on or off clears follows_credential_env (as in the admin)."
    )
    follows_credential_env: Annotated[StrictBool | None, BOOLEAN] = None
    connect_timeout_s: Annotated[Seconds | None, SECONDS] = None
    read_timeout_s: Annotated[Seconds | None, SECONDS] = None


@router.get("/providers", response={200: ProvidersOut, **ERRORS}, summary="List providers")
async def providers_get(request: HttpRequest) -> Any:
    return {"providers": await _call(providers_list)}


@router.post("/providers", response={201: ProviderOut, **WRITE_ERRORS}, summary="Add a provider")
async def providers_post(request: HttpRequest, payload: ProviderIn) -> Any:
    provider = await _call(provider_create, caller=_caller(request), values=payload.model_dump())
    return Status(201, provider)


@router.patch(
    "/providers/{name}", response={200: ProviderOut, **WRITE_ERRORS}, summary="Change a provider"
)
async def providers_patch(request: HttpRequest, name: str, payload: ProviderPatch) -> Any:
    values = payload.model_dump(exclude_unset=True)
    return await _call(provider_update, caller=_caller(request), name=name, values=values)


# Models

TIERS: dict[str, Any] = {"enum": list(LLMModel.Tier.values)}
PRICE = (
    'USD per million tokens as a decimal string ("2.50"); null: unknown (costs are recorded '
    'as unknown, never 0); "0": free.'
)


class ModelOut(Schema):
    ref: str = Field(..., description="provider:name")
    provider: str
    name: str
    display_name: str
    tier: str
    context_window: int
    max_output_tokens: int
    input_price_per_mtok_usd: str | None
    output_price_per_mtok_usd: str | None
    cached_input_price_per_mtok_usd: str | None
    task_strengths: list[str]
    accepts_images: bool
    accepts_tools: bool
    accepts_json_output: bool
    embedding_dimensions: int | None
    answers_chat: bool
    enabled: bool
    is_baseline: bool

    @staticmethod
    def resolve_ref(model: LLMModel) -> str:
        return model_ref(model)

    @staticmethod
    def resolve_provider(model: LLMModel) -> str:
        return model.provider.name

    @staticmethod
    def resolve_input_price_per_mtok_usd(model: LLMModel) -> str | None:
        return _text(model.input_price_per_mtok_usd)

    @staticmethod
    def resolve_output_price_per_mtok_usd(model: LLMModel) -> str | None:
        return _text(model.output_price_per_mtok_usd)

    @staticmethod
    def resolve_cached_input_price_per_mtok_usd(model: LLMModel) -> str | None:
        return _text(model.cached_input_price_per_mtok_usd)


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


class ModelsOut(Schema):
    models: list[ModelOut]


class ModelIn(Strict):
    provider: str = Field(..., max_length=64, description="The provider's name.")
    name: str = Field(..., max_length=200, description="The model id the provider's API expects.")
    display_name: str = Field("", max_length=200)
    tier: str = Field("standard", max_length=16, json_schema_extra=TIERS)
    context_window: Tokens = 8192
    max_output_tokens: Tokens = 4096
    input_price_per_mtok_usd: str | None = Field(None, max_length=32, description=PRICE)
    output_price_per_mtok_usd: str | None = Field(None, max_length=32, description=PRICE)
    cached_input_price_per_mtok_usd: str | None = Field(
        None, max_length=32, description="As the input price; null: billed at the input price."
    )
    task_strengths: Strengths = Field([], description="Task types it is good at (docs/routing.md).")
    accepts_images: bool = Field(
        False, strict=True, description="It reads images (vision): requests with images go to it."
    )
    accepts_tools: bool = Field(
        False, strict=True, description="It calls tools: requests with tools go to it."
    )
    accepts_json_output: bool = Field(
        False,
        strict=True,
        description="It answers in JSON on request: requests with response_format go to it.",
    )
    embedding_dimensions: int | None = Field(
        None,
        strict=True,
        ge=1,
        description="The length of its embedding vectors; null for chat models.",
    )
    answers_chat: bool = Field(
        True, strict=True, description="False for embedding-only models (chat never routes there)."
    )
    enabled: bool = Field(True, strict=True)
    is_baseline: bool = Field(
        False, strict=True, description="The premium model savings are measured against (one)."
    )


class ModelPatch(Strict):
    """Only the fields given change; a price given as null becomes unknown."""

    display_name: Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 200})] = None
    tier: Annotated[str | None, WithJsonSchema({"type": "string", **TIERS})] = None
    context_window: Annotated[Tokens | None, TOKENS] = None
    max_output_tokens: Annotated[Tokens | None, TOKENS] = None
    input_price_per_mtok_usd: str | None = Field(None, max_length=32, description=PRICE)
    output_price_per_mtok_usd: str | None = Field(None, max_length=32, description=PRICE)
    cached_input_price_per_mtok_usd: str | None = Field(None, max_length=32)
    task_strengths: Annotated[
        Strengths | None,
        WithJsonSchema({"type": "array", "items": {"type": "string"}, "maxItems": 16}),
    ] = None
    accepts_images: Annotated[StrictBool | None, BOOLEAN] = None
    accepts_tools: Annotated[StrictBool | None, BOOLEAN] = None
    accepts_json_output: Annotated[StrictBool | None, BOOLEAN] = None
    embedding_dimensions: int | None = Field(None, strict=True, ge=1)
    answers_chat: Annotated[StrictBool | None, BOOLEAN] = None
    enabled: Annotated[StrictBool | None, BOOLEAN] = None
    is_baseline: Annotated[StrictBool | None, BOOLEAN] = None


@router.get("/models", response={200: ModelsOut, **ERRORS}, summary="List models")
async def models_get(
    request: HttpRequest,
    provider: str | None = Query(None, max_length=64, description="A provider's name."),
    enabled: bool | None = None,
) -> Any:
    if provider is not None and "\x00" in provider:
        raise GatewayError(
            "INVALID_REQUEST",
            "Invalid field(s): provider",
            details={"errors": [{"field": "provider", "message": "must not contain a NUL"}]},
        )
    return {"models": await _call(models_list, provider=provider, enabled=enabled)}


@router.post("/models", response={201: ModelOut, **WRITE_ERRORS}, summary="Add a model")
async def models_post(request: HttpRequest, payload: ModelIn) -> Any:
    values = payload.model_dump()
    provider = values.pop("provider")
    model = await _call(model_create, caller=_caller(request), provider=provider, values=values)
    return Status(201, model)


@router.patch(
    "/models/{path:ref}",
    response={200: ModelOut, **WRITE_ERRORS},
    summary="Change a model",
    description="`ref` is `provider:name` (the name may hold `:` and `/`).",
)
async def models_patch(request: HttpRequest, ref: str, payload: ModelPatch) -> Any:
    values = payload.model_dump(exclude_unset=True)
    return await _call(model_update, caller=_caller(request), ref=ref, values=values)


# Agents


class AgentTargetOut(Schema):
    target: str
    state: str
    reason: str


class AgentOut(Schema):
    name: str
    source: str = Field(..., description="builtin, settings (ORCHESTRATOR_AGENTS) or policy.")
    path: str = Field(..., description="The dotted path of a custom agent.")
    enabled: bool
    state: str = Field(..., description="The latest sampled state; unknown when disabled.")
    reason: str
    targets: list[AgentTargetOut]
    last_sampled_at: datetime | None
    per_request: bool = Field(
        ..., description="It checks each request instead of being sampled: no sampled state."
    )


class AgentsOut(Schema):
    agents: list[AgentOut]


class AgentPatch(Strict):
    enabled: bool = Field(..., strict=True)


@router.get("/agents", response={200: AgentsOut, **ERRORS}, summary="List monitoring agents")
async def agents_get(request: HttpRequest) -> Any:
    return {"agents": await _call(agents_status, now=timezone.now())}


@router.patch(
    "/agents/{name}",
    response={200: AgentOut, **WRITE_ERRORS},
    summary="Turn a monitoring agent on or off",
)
async def agents_patch(request: HttpRequest, name: str, payload: AgentPatch) -> Any:
    return await _call(agent_switch, caller=_caller(request), name=name, enabled=payload.enabled)


# The audit trail


class AuditEventOut(Schema):
    id: int
    at: datetime
    user_id: int | None
    api_key_id: int | None
    action: str
    target_kind: str
    target_ref: str
    changes: dict[str, Any] = Field(..., description='{field: {"old": …, "new": …}}')


class AuditOut(Schema):
    events: list[AuditEventOut]
    next_before: int | None = Field(
        ..., description="Pass as `before` for the next (older) page; null on the last page."
    )


@router.get("/audit", response={200: AuditOut, **ERRORS}, summary="The audit trail")
async def audit_get(
    request: HttpRequest,
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, ge=1, le=2**63 - 1, description="An event id."),
    target_kind: Literal["provider", "model", "agent"] | None = None,
) -> Any:
    events = await _call(audit_events, limit=limit, before=before, target_kind=target_kind)
    return {
        "events": events,
        "next_before": events[-1].id if len(events) == limit else None,
    }
