"""Every write of the analytics app: the request log, feedback, rollups, retention, exports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import fields, replace
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from psycopg.types.json import Jsonb

from analytics.models import RequestFeedback, RequestLog, RequestPayload, RequestTag
from analytics.outcome import RequestOutcome
from analytics.quality import quality_loss
from analytics.retention import retention_apply
from analytics.rollups import rollup_advance, rollup_rebuild_day, rollup_rebuild_range
from core.db import prepared_available, prepared_many, prepared_rows
from providers.models import LLMModel

__all__ = [
    "feedback_record",
    "request_record",
    "requests_record",
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
    if outcome.tags and not prepared_available():
        with transaction.atomic():
            return _log_insert(outcome)
    # One statement needs no transaction of its own (saves BEGIN and COMMIT round trips).
    return _log_insert(outcome)


def requests_record(*, outcomes: Sequence[RequestOutcome]) -> None:
    """Write the log rows of many finished requests inside the caller's transaction, sent in
    one round trip. Any failing row (a model deleted meanwhile) fails them all with
    `request_record`'s error, and the caller's transaction with them: a caller that groups
    writes falls back to `request_record` one by one."""
    if not connection.in_atomic_block:
        raise RuntimeError("requests_record runs inside the caller's transaction")
    if not prepared_available() or getattr(settings, "ORCHESTRATOR_STORE_PAYLOADS", False):
        for outcome in outcomes:
            _request_insert(outcome)
        return
    rows = [_log_params(outcome) for outcome in outcomes if not outcome.tags]
    prepared_many(_log_insert_sql(returning=False), rows, returning=False)
    tagged = [_log_params(outcome) for outcome in outcomes if outcome.tags]
    prepared_many(_log_insert_sql(returning=False, tagged=True), tagged, returning=False)


def _log_params(outcome: RequestOutcome) -> list[Any]:
    params = [
        *(
            Jsonb(getattr(outcome, name)) if name == "decision_trace" else getattr(outcome, name)
            for name in _logged_fields()
        ),
        *_derived_values(outcome).values(),
    ]
    if outcome.tags:
        params.append(list(outcome.tags))
    return params


# Columns the log derives from the outcome rather than copies (in this order in the INSERT).
DERIVED_COLUMNS = ("premium_probability", "quality_loss")


def _derived_values(outcome: RequestOutcome) -> dict[str, float | None]:
    """The learned router's probability (when it scored the prompt) and the quality the answer
    took off the premium one's. A request that served no answer is left out of the quality
    estimate (its failure counts in the reliability figures)."""
    router = outcome.decision_trace.get("router")
    found = router.get("probability") if isinstance(router, dict) else None
    probability = (
        float(found) if isinstance(found, int | float) and not isinstance(found, bool) else None
    )
    answered = outcome.status == RequestLog.Status.SUCCESS
    return {
        "premium_probability": probability,
        "quality_loss": quality_loss(probability, outcome.model_tier) if answered else None,
    }


def _log_insert(outcome: RequestOutcome) -> RequestLog:
    values: dict[str, Any] = {name: getattr(outcome, name) for name in _logged_fields()}
    values.update(_derived_values(outcome))
    if not prepared_available():
        log = RequestLog.objects.create(**values)
        RequestTag.objects.bulk_create(
            RequestTag(request=log, tag=tag, created_at=outcome.created_at) for tag in outcome.tags
        )
        return log
    # Every request writes this row: one prepared INSERT, not the ORM's compile and quote.
    sql = _log_insert_sql(tagged=bool(outcome.tags))
    [(pk,)] = prepared_rows(sql, _log_params(outcome))
    log = RequestLog(id=pk, **values)
    log._state.adding = False
    log._state.db = "default"
    return log


@cache
def _logged_fields() -> tuple[str, ...]:
    """The outcome's fields that are columns of the log (the text goes elsewhere)."""
    columns = {f.attname for f in RequestLog._meta.concrete_fields}
    return tuple(f.name for f in fields(RequestOutcome) if f.name in columns)


@cache
def _log_insert_sql(*, returning: bool = True, tagged: bool = False) -> str:
    """The row's INSERT; `tagged`: with its tags (one more parameter, an array) in the same
    statement, so a tagged request is still one statement and one round trip."""
    meta = RequestLog._meta
    column_of = {f.attname: str(f.column) for f in meta.concrete_fields}
    columns = [column_of[name] for name in (*_logged_fields(), *DERIVED_COLUMNS)]
    placeholders = ", ".join(["%s"] * len(columns))
    insert = (
        f"INSERT INTO {meta.db_table} ({', '.join(columns)}, is_demo) "
        f"VALUES ({placeholders}, FALSE)"
    )
    if not tagged:
        return f"{insert}{' RETURNING id' if returning else ''}"
    tags = RequestTag._meta.db_table
    return (
        f"WITH logged AS ({insert} RETURNING id, request_id, created_at), "
        f"tagged AS (INSERT INTO {tags} (request_id, tag, created_at) "
        "SELECT logged.request_id, tag, logged.created_at "
        "FROM logged, unnest(%s::varchar[]) AS tag) "
        f"SELECT id FROM logged"
    )


# The gateway writes a request's row just after the answer, grouped with other requests'
# (within ~20 ms, see routing/pipeline/closing.py); feedback given in that moment waits for it.
FEEDBACK_ROW_WAIT_S = 2.0


def feedback_record(
    *, request_id: uuid.UUID, positive: bool, wait_s: float | None = None
) -> RequestFeedback:
    """Record (or change) the thumbs on one answer; one vote per request. Raises
    `RequestLog.DoesNotExist` if the request's row has not appeared within `wait_s`
    (FEEDBACK_ROW_WAIT_S by default)."""
    deadline = time.monotonic() + (FEEDBACK_ROW_WAIT_S if wait_s is None else wait_s)
    while (
        log := RequestLog.objects.only("request_id").filter(request_id=request_id).first()
    ) is None:
        if time.monotonic() >= deadline:
            raise RequestLog.DoesNotExist(f"no request log row for {request_id}")
        time.sleep(0.05)
    feedback, _ = RequestFeedback.objects.update_or_create(
        request=log, defaults={"positive": positive}
    )
    return feedback
