from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import RequestFeedback, RequestLog, RequestPayload
from analytics.services import feedback_record, request_record
from tests.analytics.conftest import DAY1, Log, at, outcome

pytestmark = pytest.mark.django_db


def test_request_record_writes_one_row_with_every_field(settings: object) -> None:
    with CaptureQueriesContext(connection) as queries:
        log = request_record(
            outcome=outcome(
                created_at=at(DAY1, 8),
                model_name="m",
                task_type="code",
                cost_usd=Decimal("0.00012345"),
                baseline_cost_usd=Decimal("0.001"),
                fallbacks=1,
                attempts=2,
                latency_ms=321,
                decision_trace={"rule": 3},
                prompt_text="hi",
                response_text="hello",
            )
        )

    row = RequestLog.objects.get(pk=log.pk)
    assert (row.cost_usd, row.baseline_cost_usd, row.cost_state) == (
        Decimal("0.00012345"),
        Decimal("0.00100000"),
        "reported",
    )
    assert (row.fallbacks, row.attempts, row.latency_ms, row.decision_trace) == (
        1,
        2,
        321,
        {"rule": 3},
    )
    assert not RequestPayload.objects.exists()
    # One INSERT and nothing around it: without a payload row the write needs no transaction.
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]


def test_payload_kept_only_when_the_setting_is_on(settings: object) -> None:
    settings.ORCHESTRATOR_STORE_PAYLOADS = True  # type: ignore[attr-defined]

    log = request_record(
        outcome=outcome(created_at=at(DAY1, 8), prompt_text="what is 2+2?", response_text="4")
    )

    assert RequestPayload.objects.get(request=log).prompt == "what is 2+2?"
    assert RequestPayload.objects.get(request=log).response == "4"


def test_unknown_price_is_stored_as_null_not_zero() -> None:
    log = request_record(
        outcome=outcome(created_at=at(DAY1, 8), cost_usd=None, cost_state="unknown_price")
    )

    assert RequestLog.objects.filter(pk=log.pk, cost_usd__isnull=True).count() == 1


def test_feedback_one_vote_per_request_last_wins(log: Log) -> None:
    request_id = RequestLog.objects.get(model_name="smol").request_id

    feedback_record(request_id=request_id, positive=True)
    feedback_record(request_id=request_id, positive=False)

    assert list(RequestFeedback.objects.values_list("request_id", "positive")) == [
        (request_id, False)
    ]


@pytest.mark.django_db(transaction=True)
def test_feedback_given_just_before_the_row_is_written_waits_for_it() -> None:
    import threading
    import time

    early = outcome(created_at=at(DAY1, 8))
    writer = threading.Timer(0.2, lambda: request_record(outcome=early))
    writer.start()
    began = time.monotonic()

    feedback_record(request_id=early.request_id, positive=True)

    writer.join()
    assert time.monotonic() - began >= 0.2
    assert list(RequestFeedback.objects.values_list("request_id", "positive")) == [
        (early.request_id, True)
    ]


def test_feedback_for_a_request_that_never_got_a_row_is_refused() -> None:
    missing = outcome(created_at=at(DAY1, 8))

    with pytest.raises(RequestLog.DoesNotExist, match=str(missing.request_id)):
        feedback_record(request_id=missing.request_id, positive=True, wait_s=0.1)
    assert RequestFeedback.objects.count() == 0
