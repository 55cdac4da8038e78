"""What every door's answer carries whatever its protocol: compact JSON bodies, the
`x-orchestrator-*` headers and the `orchestrator` extension object."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from django.http import HttpResponse, StreamingHttpResponse

from analytics.money import usd_json
from gateway.auth import rate_limit_headers
from routing.pipeline.events import Delta, Event, Failed, Finished, Started


def json_response(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    """`body` as compact UTF-8 JSON, by orjson (a gateway answer's body and decision trace
    took a few per cent of its CPU through `json`): every value here is already plain JSON."""
    return HttpResponse(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json",
        status=status,
        headers=headers,
    )


def orchestrator_extension(event: Finished) -> dict[str, Any]:
    """The `orchestrator` object a finished answer carries beside the protocol's own fields."""
    return {
        "request_id": str(event.request_id),
        "model": event.model_ref,
        "provider": event.provider_name,
        "cached": event.cached,
        "attempts": event.attempts,
        "fallbacks": event.fallbacks,
        "cost_usd": usd_json(event.cost_usd),
        "cost_state": event.cost_state,
        "baseline_cost_usd": usd_json(event.baseline_cost_usd),
        "decision": event.decision_trace,
    }


def orchestrator_headers(request_id: str, started: Started | Finished | None) -> dict[str, str]:
    """The `x-orchestrator-*` headers (and `x-cache`) of every door's answer."""
    headers = {"x-orchestrator-request-id": request_id}
    if started is not None:
        headers["x-orchestrator-model"] = started.model_ref
        headers["x-orchestrator-provider"] = started.provider_name
        headers["x-orchestrator-cached"] = "true" if started.cached else "false"
        headers["x-cache"] = "hit" if started.cached else "miss"
    return headers


def streamed_response(
    body: AsyncIterator[bytes],
    *,
    content_type: str,
    headers: dict[str, str],
    started: Started | None,
) -> StreamingHttpResponse:
    """A streamed answer: neither cached nor buffered by a proxy on the way, with the door's
    `headers` and, once a model was routed to, the key's rate-limit headers."""
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    if started is not None:
        headers = headers | rate_limit_headers(started.rate_limit)
    for name, value in headers.items():
        response[name] = value
    return response


async def answer_opening(
    events: AsyncGenerator[Event, None],
) -> tuple[Started | None, Delta | Finished | Failed]:
    """A streamed answer's opening: the `Started` event (None when the answer is served without
    one) and the first event that shows what the answer is, a first piece of text or its end, or
    a failure before any (the stream is then closed). Every door's streamed answer waits for it
    before its headers, so they name the model that actually answers and a failure before any
    text is an ordinary HTTP error."""
    started: Started | None = None
    try:
        async for event in events:
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Failed):
                await events.aclose()
                return started, event
            elif isinstance(event, Delta | Finished):
                return started, event
    except BaseException:
        await events.aclose()
        raise
    raise RuntimeError("chat_stream ended without a terminal event")
