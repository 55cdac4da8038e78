"""The native API under /api/ (django-ninja; OpenAPI at /api/docs).

Operations parse and authenticate, call one service, and shape the answer; every refusal uses
one envelope, `{"error": {"code", "message", "details"}}`, with the status from
`routing.pipeline.events.ERROR_STATUS`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from prometheus_client import CONTENT_TYPE_LATEST

from analytics.money import usd_json
from analytics.traffic import gateway_metrics
from core.dependencies import (
    DEPENDENCY_UNAVAILABLE,
    dependency_away,
    dependency_message,
)
from gateway.auth import GATEWAY_AUTH, ErrorOut, GatewayError, rate_limit_headers
from gateway.batch import batch_create, batch_progress, execute_result, task_request
from gateway.manage import router as manage_router
from gateway.service_access import service_access_required
from gateway.tasks import batch_item_enqueue
from routing.guards.response_cache import ResponseCache, cache_control_opts_out
from routing.pipeline.events import Caller, Failed, Finished
from routing.pipeline.journal import journaled
from routing.plans.run import long_context_stream
from routing.prometheus import prometheus_text
from routing.request_metadata import metadata_read
from routing.services import chat_stream
from routing.status import model_statuses
from routing.validation import (
    FALLBACK_CHAIN_MAX,
    MAX_OUTPUT_TOKENS,
    MODEL_MAX_CHARS,
    SESSION_MAX_CHARS,
    TASK_TYPE_MAX_CHARS,
    FieldInvalid,
    fallback_chain_check,
    nul_check,
)

logger = logging.getLogger(__name__)


class StrictJSONParser(Parser):
    """Request bodies parsed by orjson, as on /v1: no NaN or Infinity, no lone surrogates (no
    log row could hold one), nesting bounded. A body it refuses is a 400 INVALID_REQUEST."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return orjson.loads(request.body)


api = NinjaAPI(
    title="LLM Orchestrator native API",
    version="1",
    urls_namespace="gateway-api",
    auth=GATEWAY_AUTH,
    docs_url="/docs",
    parser=StrictJSONParser(),
)
# Staff only: register and switch providers, models and agents at runtime (gateway/manage.py).
api.add_router("/manage", manage_router)


def envelope(
    code: str,
    message: str,
    status: int,
    *,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    trace_id: str | None = None,
) -> JsonResponse:
    """The one error envelope; `trace_id` (the request's id, also in the
    `x-orchestrator-request-id` header) names the log row of a request that was logged."""
    error: dict[str, Any] = {"code": code, "message": message, "details": details or {}}
    if trace_id is not None:
        error["trace_id"] = trace_id
        headers = (headers or {}) | {"x-orchestrator-request-id": trace_id}
    return JsonResponse({"error": error}, status=status, headers=headers)


@csrf_exempt
def unknown_endpoint(request: HttpRequest) -> HttpResponse:
    """Any path under /api/ that no route of the native API (nor the Ollama door) matches: the
    API's own 404 envelope, never Django's HTML page (a path parameter that cannot match its
    route, such as an empty model reference, lands here too)."""
    return envelope("INVALID_REQUEST", f"Unknown endpoint {request.path}.", 404)


@api.exception_handler(GatewayError)
def _gateway_error(request: HttpRequest, exc: GatewayError) -> HttpResponse:
    headers = rate_limit_headers(exc.rate_limit, exc.retry_after_s)
    return envelope(
        exc.code,
        exc.message,
        exc.status,
        details=exc.details,
        headers=headers,
        trace_id=exc.trace_id,
    )


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # A field is named by its path in the JSON body: ninja's location also names where the
    # value came from and the operation's parameter ("body", "payload").
    errors = [
        {
            "field": ".".join(
                str(part) for part in error.get("loc", ()) if part not in ("body", "payload")
            ),
            "message": error.get("msg", ""),
        }
        for error in exc.errors
    ]
    fields = ", ".join(error["field"] or "body" for error in errors)
    return envelope(
        "INVALID_REQUEST", f"Invalid field(s): {fields}", 400, details={"errors": errors}
    )


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return envelope(
        "AUTHENTICATION_FAILED",
        "Missing, invalid or revoked API key (Bearer or x-api-key), or no signed-in session.",
        401,
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = "AUTHENTICATION_FAILED" if exc.status_code in (401, 403) else "INVALID_REQUEST"
    return envelope(code, str(exc.message), exc.status_code)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return envelope("INVALID_REQUEST", str(exc) or "Not found.", 404)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    dependency = dependency_away(exc)
    if dependency is not None:
        logger.warning("native API request refused, %s unreachable: %s", dependency, exc)
        return envelope(DEPENDENCY_UNAVAILABLE, dependency_message(dependency), 503)
    logger.exception("native API request failed", extra={"path": request.path})
    return envelope("SERVICE_UNAVAILABLE", "The gateway failed to handle this request.", 503)


class MessageIn(Schema):
    role: Literal["system", "user", "assistant"]
    content: str


class ExecuteIn(Schema):
    prompt: str | None = Field(None, description="The prompt; or give `messages`.")
    messages: list[MessageIn] | None = None
    task_type: str | None = Field(None, max_length=TASK_TYPE_MAX_CHARS)
    model_id: str | None = Field(
        None,
        max_length=MODEL_MAX_CHARS,
        description="Override routing: 'provider:model', a model name or a policy name.",
    )
    fallback_chain: list[str] | None = Field(
        None,
        max_length=FALLBACK_CHAIN_MAX,
        description="Models to try in this order ('provider:model' or a model name), after "
        "`model_id` when it names one, instead of a routed chain.",
    )
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS, strict=True)
    temperature: float | None = Field(None, ge=0, le=2)
    system_prompt: str | None = None
    context: dict[str, Any] | str | None = Field(
        None,
        description="Injected into the prompt as a system message: an object as `key: value` "
        "lines, or a text (a document). A text too long for every model's context window is "
        "answered by parts (docs/routing.md, Long context: plans by parts).",
    )
    metadata: dict[str, Any] | None = Field(
        None,
        description='e.g. {"cache": false, "user_id": "u-1", "project_id": "search", '
        '"tags": ["beta"], "local_only": true}: `user_id` (up to 128 characters), `project_id` '
        "(up to 64) and `tags` (up to 16, each up to 64, no comma) are kept on the request log "
        "for reports; `local_only` keeps the request on local models (or refuses it).",
    )
    cache: bool | None = Field(
        None,
        strict=True,
        description="false: neither read from nor kept in the response cache "
        "(as `Cache-Control: no-cache` or `no-store`).",
    )
    session_id: str = Field("", max_length=SESSION_MAX_CHARS)


class MetricsOut(Schema):
    total_latency: float
    time_to_first_token: float | None
    input_tokens: int
    output_tokens: int
    cost: str | None
    cost_state: str
    baseline_cost: str | None


class ExecuteOut(Schema):
    request_id: str
    response: str
    model_id: str
    agent_checks: dict[str, dict[str, Any]] = Field(
        ...,
        description="Each agent the decision read, by name: proceed, state, target (its "
        "recommendation: local, cloud or empty), reason, metrics, source, targets.",
    )
    metrics: MetricsOut
    routing: dict[str, Any]
    plan: dict[str, Any] | None = Field(
        None,
        description="Set when the answer was assembled from parts of a long `context`: parts, "
        "reduce steps, calls, model, part boundaries and each call's request id.",
    )
    cached: bool
    rate_limit: dict[str, Any] | None


ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 402, 403, 413, 429, 502, 503, 504)}


def _task(
    payload: ExecuteIn,
    path: str = "",
    *,
    cache_control: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The task of one request (`path` names a batch item: `tasks[3].`), refused here when
    its log row could not be written (routing/validation.py). A `Cache-Control` of
    `no-cache` or `no-store` keeps it out of the response cache."""
    if not payload.prompt and not payload.messages:
        field = f"{path}prompt"
        raise GatewayError(
            "INVALID_REQUEST", f"{field}: give a prompt or messages", details={"field": field}
        )
    task = payload.model_dump(exclude_none=True)
    try:
        nul_check(task, path.rstrip("."))
        fallback_chain_check(payload.fallback_chain, f"{path}fallback_chain")
    except FieldInvalid as exc:
        raise GatewayError("INVALID_REQUEST", str(exc), details={"field": exc.field}) from exc
    try:
        found = metadata_read(body=task.get("metadata"), path=f"{path}metadata", headers=headers)
    except FieldInvalid as exc:
        raise GatewayError("INVALID_REQUEST", str(exc), details={"field": exc.field}) from exc
    # Kept on the task in their checked form: a batch item runs from its stored task.
    task["metadata"] = {
        **(task.get("metadata") or {}),
        "user_id": found.end_user,
        "project_id": found.project,
        "tags": list(found.tags),
        "local_only": found.local_only,
    }
    if cache_control_opts_out(cache_control):
        task["cache"] = False
    return task


@api.post("/execute", response={200: ExecuteOut, **ERRORS}, summary="Run one prompt")
async def execute(request: HttpRequest, payload: ExecuteIn) -> HttpResponse:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    task = _task(
        payload, cache_control=request.headers.get("cache-control"), headers=request.headers
    )
    # A text context is the request's document: too long for every model, it is read by parts.
    document = task.pop("context") if isinstance(payload.context, str) and payload.context else None
    gateway_request = task_request(task, caller=caller, entry_point="native")
    stream = (
        chat_stream(gateway_request)
        if document is None
        else long_context_stream(gateway_request, document=document)
    )
    events = journaled(stream, request=gateway_request)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Failed):
                return envelope(
                    event.code,
                    event.message,
                    event.http_status,
                    details={"request_id": str(event.request_id), **event.details},
                    headers=rate_limit_headers(event.rate_limit, event.retry_after_s),
                    trace_id=str(event.request_id),
                )
            if isinstance(event, Finished):
                headers = rate_limit_headers(event.rate_limit) | {
                    "x-orchestrator-request-id": str(event.request_id),
                    "x-orchestrator-model": event.model_ref,
                    "x-cache": "hit" if event.cached else "miss",
                }
                return JsonResponse(execute_result(event), headers=headers)
    raise RuntimeError("chat_stream ended without a terminal event")


class BatchIn(Schema):
    tasks: list[ExecuteIn] = Field(..., min_length=1, max_length=1000)
    priority: int = Field(5, ge=0, le=9, description="0 (lowest) to 9 (highest).")


class BatchCreatedOut(Schema):
    batch_id: str
    total: int


@api.post("/batch", response={202: BatchCreatedOut, **ERRORS}, summary="Submit a batch")
async def batch_submit(request: HttpRequest, payload: BatchIn) -> HttpResponse:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    cache_control = request.headers.get("cache-control")
    tasks = [
        _task(task, f"tasks[{index}].", cache_control=cache_control, headers=request.headers)
        for index, task in enumerate(payload.tasks)
    ]
    batch = await sync_to_async(batch_create)(
        caller=caller, tasks=tasks, priority=payload.priority, enqueue=batch_item_enqueue
    )
    return JsonResponse({"batch_id": str(batch.id), "total": batch.total}, status=202)


@api.get("/batch/{batch_id}", summary="Batch progress and per-item results")
async def batch_get(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    progress = await sync_to_async(batch_progress)(batch_id=batch_id, caller=caller)
    if progress is None:
        raise Http404(f"No batch {batch_id}.")
    return JsonResponse(
        {
            "batch_id": progress.id,
            "state": progress.state,
            "total": progress.total,
            "succeeded": progress.succeeded,
            "failed": progress.failed,
            "pending": progress.pending,
            "progress_pct": progress.progress_pct,
            "created_at": progress.created_at,
            "finished_at": progress.finished_at,
            "items": [item.__dict__ for item in progress.items],
        }
    )


class CachePurgeIn(Schema):
    provider: str | None = Field(None, max_length=MODEL_MAX_CHARS, description="A provider's name.")
    model: str | None = Field(
        None,
        max_length=MODEL_MAX_CHARS,
        description="The provider's own model name (of every provider unless `provider` is given).",
    )
    key: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="One answer's key: `orchestrator.decision.cache.key` of its response.",
    )


@api.post(
    "/cache/purge",
    response={200: dict[str, int], 403: ErrorOut, **ERRORS},
    summary="Purge cached answers",
)
async def cache_purge(request: HttpRequest, payload: CachePurgeIn) -> HttpResponse:
    """Drop the response cache's answers matching every filter given (staff only)."""
    caller: Caller = request.auth  # type: ignore[attr-defined]
    if not caller.is_staff:
        return envelope(
            "AUTHENTICATION_FAILED", "Staff only: a staff user's session or API key.", 403
        )
    if payload.provider is None and payload.model is None and payload.key is None:
        raise GatewayError(
            "INVALID_REQUEST", "give a provider, a model or a key", details={"field": "body"}
        )
    purged = await sync_to_async(ResponseCache().purge)(
        provider=payload.provider, model=payload.model, key=payload.key
    )
    return JsonResponse({"purged": purged})


# Service endpoints at the site root (plain async views: /health's neighbours, not under /api);
# who may read them: gateway/service_access.py.


@service_access_required
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: request-log totals over `?window_s=` (default one day)."""
    window_s = _window(request)
    m = await sync_to_async(gateway_metrics)(window_s=window_s)
    return JsonResponse(
        {
            "window_s": m.window_s,
            "requests": {
                "total": m.total,
                "success": m.success,
                "failed": m.failed,
                "by_status": m.by_status,
                "cache_hits": m.cache_hits,
            },
            "performance": {
                "avg_response_time": (
                    None if m.avg_response_time_ms is None else m.avg_response_time_ms / 1000
                ),
                "p95_response_time": (
                    None if m.p95_response_time_ms is None else m.p95_response_time_ms / 1000
                ),
            },
            "tokens": {
                "input": m.input_tokens,
                "output": m.output_tokens,
                "cached": m.cached_tokens,
                "total": m.input_tokens + m.output_tokens + m.cached_tokens,
            },
            "cost": {
                "total_usd": usd_json(m.cost_usd),
                "baseline_usd": usd_json(m.baseline_cost_usd),
                "savings_usd": usd_json(m.baseline_cost_usd - m.cost_usd),
                # Never hidden as $0: requests the total could not price are counted apart.
                "estimated_requests": m.estimated_cost_requests,
                "unknown_price_requests": m.unknown_price_requests,
            },
        }
    )


def _window(request: HttpRequest) -> int:
    raw = request.GET.get("window_s", "86400")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 90 * 86400 else 86400


@service_access_required
async def metrics_prometheus_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics/prometheus`: the live counters and histograms, budget use and breaker
    state in the Prometheus text format (`routing.prometheus`)."""
    return HttpResponse(await sync_to_async(prometheus_text)(), content_type=CONTENT_TYPE_LATEST)


@service_access_required
async def models_view(request: HttpRequest) -> HttpResponse:
    statuses = await sync_to_async(model_statuses)()
    return JsonResponse({"models": [s.as_json() for s in statuses]})


@service_access_required
async def model_status_view(request: HttpRequest, name: str) -> HttpResponse:
    # No model's name holds a NUL (Postgres could not even compare one) or is that long.
    if "\x00" in name or len(name) > 2 * MODEL_MAX_CHARS:
        return envelope("MODEL_UNAVAILABLE", "No model by that name.", 404)
    statuses = await sync_to_async(model_statuses)(name=name)
    if not statuses:
        return envelope("MODEL_UNAVAILABLE", f"No model called {name!r}.", 404)
    if len(statuses) > 1:
        refs = ", ".join(s.ref for s in statuses)
        return envelope(
            "INVALID_REQUEST", f"{name!r} names several models; use one of {refs}.", 400
        )
    return JsonResponse(statuses[0].as_json())
