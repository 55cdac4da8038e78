"""Every write of the analytics app: the request log, feedback, rollups, retention, exports."""

from __future__ import annotations

import uuid
from dataclasses import replace

from django.conf import settings
from django.db import IntegrityError, transaction

from analytics.models import RequestFeedback, RequestLog, RequestPayload
from analytics.outcome import RequestOutcome
from analytics.retention import retention_apply
from analytics.rollups import rollup_advance, rollup_rebuild_day, rollup_rebuild_range
from providers.models import LLMModel

__all__ = [
    "feedback_record",
    "request_record",
    "retention_apply",
    "rollup_advance",
    "rollup_rebuild_day",
    "rollup_rebuild_range",
]


def request_record(*, outcome: RequestOutcome) -> RequestLog:
    """Write the one log row of a finished request (and its text, when payloads are kept).

    A model deleted while its request ran (the registry is cached for a moment) must not lose
    the row: it is written without the link, the model's name and provider stay on it.
    """
    try:
        return _request_insert(outcome)
    except IntegrityError:
        if outcome.model_id is None or LLMModel.objects.filter(pk=outcome.model_id).exists():
            raise
        return _request_insert(replace(outcome, model_id=None))


def _request_insert(outcome: RequestOutcome) -> RequestLog:
    store_payload = getattr(settings, "ORCHESTRATOR_STORE_PAYLOADS", False)
    if store_payload and outcome.prompt_text is not None:
        with transaction.atomic():
            log = _log_insert(outcome)
            RequestPayload.objects.create(
                request=log, prompt=outcome.prompt_text, response=outcome.response_text or ""
            )
        return log
    # One statement needs no transaction of its own (saves BEGIN and COMMIT round trips).
    return _log_insert(outcome)


def _log_insert(outcome: RequestOutcome) -> RequestLog:
    return RequestLog.objects.create(
        request_id=outcome.request_id,
        created_at=outcome.created_at,
        entry_point=outcome.entry_point,
        user_id=outcome.user_id,
        api_key_id=outcome.api_key_id,
        conversation_id=outcome.conversation_id,
        session_id=outcome.session_id,
        task_type=outcome.task_type,
        complexity=outcome.complexity,
        requested_model=outcome.requested_model,
        model_id=outcome.model_id,
        model_name=outcome.model_name,
        provider_name=outcome.provider_name,
        locality=outcome.locality,
        status=outcome.status,
        error_code=outcome.error_code,
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        cached_tokens=outcome.cached_tokens,
        cost_usd=outcome.cost_usd,
        cost_state=outcome.cost_state,
        baseline_cost_usd=outcome.baseline_cost_usd,
        latency_ms=outcome.latency_ms,
        time_to_first_token_ms=outcome.time_to_first_token_ms,
        attempts=outcome.attempts,
        fallbacks=outcome.fallbacks,
        cache_hit=outcome.cache_hit,
        decision_trace=outcome.decision_trace,
    )


def feedback_record(*, request_id: uuid.UUID, positive: bool) -> RequestFeedback:
    """Record (or change) the thumbs on one answer; one vote per request."""
    log = RequestLog.objects.only("request_id").get(request_id=request_id)
    feedback, _ = RequestFeedback.objects.update_or_create(
        request=log, defaults={"positive": positive}
    )
    return feedback
