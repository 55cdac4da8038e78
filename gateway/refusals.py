"""A door's refusal of a request that never reached the pipeline (a body that is not JSON, a
field no model could be asked with): logged as the request's one row, `status=invalid`, so the
caller's trace id names it, as every door does alike."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest

from core.threads import LARGE_BODY_BYTES, cpu_bound
from gateway.auth import GatewayError
from routing.pipeline.events import Caller, GatewayRequest
from routing.pipeline.journal import request_refusal_record
from routing.pipeline.ledger import RequestStatus
from routing.validation import MODEL_MAX_CHARS, log_safe


async def refusal_logged(
    refusal: GatewayError, *, entry_point: str, caller: Caller, model: object = None
) -> GatewayError:
    """Write `refusal`'s log row and give it the row's id as its trace id. `model`, the name
    the request gave, is named on the row only when the row can hold it."""
    refused = GatewayRequest(
        messages=(),
        entry_point=entry_point,
        caller=caller,
        model=log_safe(model, MODEL_MAX_CHARS) if isinstance(model, str) else None,
    )
    await request_refusal_record(
        request=refused,
        status=RequestStatus.INVALID,
        error_code=refusal.code,
        message=refusal.message,
    )
    refusal.trace_id = str(refused.request_id)
    return refusal


def field_refused(field: str, message: str) -> GatewayError:
    """INVALID_REQUEST naming `field` (each door shows it where its protocol names a field)."""
    return GatewayError("INVALID_REQUEST", f"{field}: {message}", details={"field": field})


def number_field(
    body: dict[str, Any], field: str, low: float, high: float, *, name: str | None = None
) -> float | None:
    """`body[field]` as a float in [low, high], None when absent; refused naming `name` (the
    field's path in the request, `field` by default) when it is anything else."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise field_refused(name or field, f"must be a number between {low:g} and {high:g}")
    return float(value)


def model_of(body: Any) -> object:
    """The `model` a JSON body names, whatever its type (None when it is no object)."""
    return body.get("model") if isinstance(body, dict) else None


async def json_body(
    request: HttpRequest, caller: Caller, *, entry_point: str, logged: bool = True
) -> Any:
    """The request's JSON body, parsed off the event loop when it is large. orjson: several
    times faster than `json`, and stricter (no NaN or Infinity, no lone surrogates, nesting
    bounded), as the providers' own parsers are. A body that is not JSON is refused, and logged
    when `logged` (when the request would have been)."""
    try:
        raw = request.body
        return (
            await cpu_bound(orjson.loads, raw) if len(raw) > LARGE_BODY_BYTES else orjson.loads(raw)
        )
    except (ValueError, UnicodeDecodeError) as exc:
        refusal = GatewayError(
            "INVALID_REQUEST", f"body: not valid JSON ({exc})", details={"field": "body"}
        )
        if logged:
            await refusal_logged(refusal, entry_point=entry_point, caller=caller)
        raise refusal from exc
