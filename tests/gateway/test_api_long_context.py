"""A document too long for every model's window, through the live server's native API: cut into
parts on paragraph boundaries with overlap, the parts answered at most four at a time, the
partial answers combined; one row for the plan with its calls' tokens and costs summed, one row
per call linked to it; a plan that cannot fit the budget or the key's limits is refused before
any model is called; a client that hangs up stops every part."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from analytics.models import DailyRollup, RequestLog
from analytics.rollups import local_day, rollup_rebuild_day
from analytics.traffic import gateway_metrics
from providers.models import LLMModel
from routing.models import Budget
from tests.gateway.test_api_errors import execute, native_error
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    baseline_model,
    chat_path,
    every_task_to,
    new_key,
    settle_config,
    upstream_models,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROMPT = "Which incidents happened?"
PARAGRAPH_CHARS = 600
PARAGRAPHS = 30


@dataclass
class CountingUpstream(UpstreamServer):
    """The upstream server, counting the requests it is serving at once."""

    in_flight: int = 0
    most_in_flight: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await super()._handle(reader, writer)
        finally:
            self.in_flight -= 1


@pytest.fixture(scope="module")
def counting_server() -> Iterator[CountingUpstream]:
    server = CountingUpstream()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def counting(counting_server: CountingUpstream) -> Iterator[CountingUpstream]:
    counting_server.reset()
    counting_server.most_in_flight = 0
    yield counting_server
    counting_server.reset()


def paragraph(index: int) -> str:
    head = f"Incident {index:02d}: "
    return head + "x" * (PARAGRAPH_CHARS - 2 - len(head)) + "\n\n"


DOCUMENT = "".join(paragraph(i) for i in range(PARAGRAPHS))


def small_windows(upstream: UpstreamServer) -> dict[str, LLMModel]:
    """`alpha` (primary) and `beta`, both with a 2,000-token window: the 18,000-character
    document (4,500 tokens by the routing estimate) fits neither."""
    models = upstream_models(upstream)
    for model in models.values():
        model.context_window = 2000
        model.save()
    models["premium"] = baseline_model(upstream, enabled=False)
    every_task_to("long-policy", models["alpha"], models["beta"])
    settle_config()
    return models


def answers(upstream: UpstreamServer, **options: Any) -> None:
    reply = Reply.sse(openai_sse(["ok"], usage=(1000, 20)), **options)
    upstream.reply("POST", chat_path("alpha"), reply)


def context_of(recorded: Any) -> str:
    """The part of the document a call carried (its plan's note line taken off)."""
    system = [m["content"] for m in recorded.json()["messages"] if m["role"] == "system"]
    return str(system[0].split(":\n", 1)[1])


# By the plan for alpha (openai_compatible: 3.3 characters a token, 10 % of its 2,000-token
# window kept free): instructions 8 + 64 tokens, answers of 100, so a part holds 1,628 tokens:
# 8 paragraphs of 182, or 7 after the previous part's last paragraph (the overlap, <= 200).
BOUNDARIES = [[0, 4800], [4800, 9000], [9000, 13200], [13200, 17400], [17400, 18000]]


def test_a_document_too_long_for_every_window_is_answered_by_parts(
    live_server_url: str, counting: CountingUpstream
) -> None:
    models = small_windows(counting)
    answers(counting, delay_s=0.3)
    key = new_key()

    response = execute(
        live_server_url, key, {"prompt": PROMPT, "context": DOCUMENT, "max_tokens": 100}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    plan = body["plan"]
    assert (plan["parts"], plan["reduce_steps"], plan["calls"]) == (5, 1, 6)
    assert (plan["model"], plan["part_tokens"], plan["fan_in"]) == ("alpha:alpha-model", 1628, 14)
    assert plan["boundaries"] == BOUNDARIES
    assert plan["concurrency"] == 4
    assert body["routing"]["plan"] == plan
    assert body["response"] == "ok"
    assert body["model_id"] == "alpha:alpha-model"
    # Six calls of 1,000 input tokens at $1.25/Mtok and 20 output tokens at $10/Mtok.
    assert Decimal(body["metrics"]["cost"]) == Decimal("0.0087")
    assert (body["metrics"]["input_tokens"], body["metrics"]["output_tokens"]) == (6000, 120)

    # Five parts, never more than four at once, then the one combining step.
    assert counting.most_in_flight == 4
    calls = list(counting.requests)
    assert len(calls) == 6
    parts = {context_of(call) for call in calls[:5]}
    assert parts == {
        "".join(paragraph(i) for i in range(0, 8)),
        "".join(paragraph(i) for i in range(7, 15)),
        "".join(paragraph(i) for i in range(14, 22)),
        "".join(paragraph(i) for i in range(21, 29)),
        "".join(paragraph(i) for i in range(28, 30)),
    }
    assert all(call.json()["max_tokens"] == 100 for call in calls)
    combine = calls[5].json()["messages"][0]["content"]
    assert "### Part 1 of 5\nok\n\n### Part 2 of 5\nok" in combine
    assert combine.endswith(
        "Combine them into one answer to the request, without mentioning the parts."
    )
    assert calls[5].json()["messages"][1] == {"role": "user", "content": PROMPT}

    rows = wait_rows(7, entry_point="native")
    (whole,) = [row for row in rows if row.parent_id is None]
    children = [row for row in rows if row.parent_id is not None]
    assert str(whole.request_id) == body["request_id"]
    assert whole.status == RequestLog.Status.SUCCESS
    assert (whole.input_tokens, whole.output_tokens) == (6000, 120)
    assert whole.cost_usd == Decimal("0.0087")
    assert whole.cost_state == RequestLog.CostState.REPORTED
    assert whole.model_id == models["alpha"].pk
    assert whole.attempts == 6
    assert len(children) == 6
    assert {row.parent_id for row in children} == {whole.request_id}
    assert all(row.cost_usd == Decimal("0.00145") for row in children)
    assert sum((row.cost_usd or Decimal(0) for row in children), Decimal(0)) == whole.cost_usd
    ids = plan["request_ids"]
    assert {str(row.request_id) for row in children} == set(ids["parts"] + ids["reduce_1"])
    assert set(whole.parts.values_list("request_id", flat=True)) == {
        row.request_id for row in children
    }
    # Reports count the plan once: its row, not its calls' as well.
    totals = gateway_metrics(window_s=3600)
    assert (totals.total, totals.input_tokens, totals.cost_usd) == (1, 6000, Decimal("0.0087"))
    rollup_rebuild_day(day=local_day(whole.created_at))
    (rolled,) = DailyRollup.objects.all()
    assert (rolled.requests, rolled.input_tokens, rolled.cost_usd) == (1, 6000, Decimal("0.0087"))


def test_a_plan_the_budget_cannot_hold_is_refused_before_any_call(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    answers(counting)
    Budget.objects.create(name="small", limit_usd=Decimal("0.01"))
    key = new_key()

    response = execute(
        live_server_url, key, {"prompt": PROMPT, "context": DOCUMENT, "max_tokens": 100}
    )

    assert response.status_code == 402
    error = native_error(response)
    assert error["code"] == "PLAN_EXCEEDS_BUDGET"
    # 7,200 prompt tokens at most (the parts' 6,548 and the step's 652) at $1.25/Mtok and
    # 600 answer tokens at $10/Mtok.
    assert error["details"] == {
        "request_id": error["trace_id"],
        "parts": 5,
        "calls": 6,
        "model": "alpha:alpha-model",
        "max_cost_usd": "0.01500000",
        "budget": "small",
        "reason": error["details"]["reason"],
    }
    assert "0.01500000 USD" in error["message"]
    assert counting.requests == []
    (row,) = wait_rows(1, entry_point="native")
    assert (row.status, row.error_code) == (RequestLog.Status.BUDGET_REFUSED, "PLAN_EXCEEDS_BUDGET")
    assert row.cost_usd is None
    assert row.decision_trace["plan"]["parts"] == 5
    assert Budget.objects.get(name="small").periods.get().reserved_usd == 0


def test_a_plan_beyond_the_keys_requests_per_minute_is_refused_before_any_call(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    answers(counting)
    key = new_key(rpm_limit=5)

    response = execute(
        live_server_url, key, {"prompt": PROMPT, "context": DOCUMENT, "max_tokens": 100}
    )

    assert response.status_code == 429
    error = native_error(response)
    assert error["code"] == "PLAN_EXCEEDS_RATE_LIMIT"
    assert error["details"] == {
        "request_id": error["trace_id"],
        "parts": 5,
        "calls": 6,
        "max_tokens": 7800,
        "rpm_limit": 5,
        "tpm_limit": None,
    }
    assert counting.requests == []
    (row,) = wait_rows(1, entry_point="native")
    assert (row.status, row.error_code) == (
        RequestLog.Status.RATE_LIMITED,
        "PLAN_EXCEEDS_RATE_LIMIT",
    )


def test_a_client_that_hangs_up_stops_every_part(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    answers(counting, delay_s=3)
    key = new_key()

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_server_url}/api/execute",
            json={"prompt": PROMPT, "context": DOCUMENT, "max_tokens": 100},
            headers={"Authorization": f"Bearer {key}"},
            timeout=1.5,
        )

    rows = wait_rows(5, entry_point="native")
    # Past the replies' delay: no part started after the hang-up.
    time.sleep(3)
    assert len(counting.requests) == 4
    assert RequestLog.objects.count() == 5
    (whole,) = [row for row in rows if row.parent_id is None]
    assert (whole.status, whole.error_code) == (RequestLog.Status.CANCELLED, "CANCELLED")
    children = [row for row in rows if row.parent_id is not None]
    assert len(children) == 4
    assert {row.status for row in children} == {RequestLog.Status.CANCELLED}
    assert {row.parent_id for row in children} == {whole.request_id}


def test_a_text_context_that_fits_is_one_ordinary_request(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    answers(counting)
    key = new_key()

    response = execute(
        live_server_url,
        key,
        {"prompt": PROMPT, "context": paragraph(0), "system_prompt": "Be brief."},
    )

    assert response.status_code == 200, response.text
    assert response.json()["plan"] is None
    (call,) = counting.requests
    assert call.json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Context:\n" + paragraph(0)},
        {"role": "user", "content": PROMPT},
    ]
    (row,) = wait_rows(1, entry_point="native")
    assert row.parent_id is None
    assert "plan" not in row.decision_trace


def test_an_object_context_is_still_key_value_lines(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    answers(counting)
    key = new_key()

    response = execute(
        live_server_url, key, {"prompt": PROMPT, "context": {"team": "ops", "week": 12}}
    )

    assert response.status_code == 200, response.text
    (call,) = counting.requests
    assert json.loads(call.body)["messages"][0] == {
        "role": "system",
        "content": "Context:\n- team: ops\n- week: 12",
    }


def test_a_part_that_fails_fails_the_plan_and_names_the_part(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    refused = Reply.json({"error": {"message": "content policy"}}, status=400)
    counting.reply("POST", chat_path("alpha"), refused)
    key = new_key()

    response = execute(
        live_server_url, key, {"prompt": PROMPT, "context": DOCUMENT, "max_tokens": 100}
    )

    assert response.status_code == 502
    error = native_error(response)
    assert error["code"] == "MODEL_ERROR"
    assert error["message"].startswith("part ")
    assert " of 5 failed: " in error["message"]
    # No combining step after a failed part, and no part beyond the first four started.
    assert 1 <= len(counting.requests) <= 4
    # The plan's row is written last, once every call has ended.
    (whole,) = wait_rows(1, entry_point="native", parent__isnull=True)
    assert str(whole.request_id) == error["trace_id"]
    assert (whole.status, whole.error_code) == (RequestLog.Status.ERROR, "MODEL_ERROR")
    children = wait_rows(len(counting.requests), parent=whole.request_id)
    assert len(children) >= len(counting.requests)
    assert error["details"]["failed_request_id"] in {str(row.request_id) for row in children}


def test_the_openai_door_reads_a_document_by_parts_only_when_asked(
    live_server_url: str, counting: CountingUpstream
) -> None:
    small_windows(counting)
    answers(counting)
    key = new_key()
    url = f"{live_server_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    asked = {"model": "auto", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 100}

    by_parts = httpx.post(url, headers=headers, json=asked | {"context": DOCUMENT}, timeout=30)
    calls = len(counting.requests)
    # The same document inside a message is never split: it is too long, and says so.
    inline = httpx.post(
        url,
        headers=headers,
        json=asked | {"messages": [{"role": "user", "content": PROMPT + "\n\n" + DOCUMENT}]},
    )
    streamed = httpx.post(url, headers=headers, json=asked | {"context": DOCUMENT, "stream": True})
    empty = httpx.post(url, headers=headers, json=asked | {"context": ""})

    assert by_parts.status_code == 200, by_parts.text
    answer = by_parts.json()
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    plan = answer["orchestrator"]["decision"]["plan"]
    assert (plan["parts"], plan["calls"], plan["boundaries"]) == (5, 6, BOUNDARIES)
    assert (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]) == (6000, 120)
    assert Decimal(answer["orchestrator"]["cost_usd"]) == Decimal("0.0087")
    assert calls == 6
    assert (inline.status_code, inline.json()["error"]["code"]) == (400, "context_length_exceeded")
    for refused, message in (
        (streamed, "context: is answered whole, not streamed"),
        (empty, "context: must be a non-empty string"),
    ):
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "context"
        assert refused.json()["error"]["message"].startswith(message)
    assert len(counting.requests) == 6
    rows = wait_rows(10, entry_point="openai")
    (whole,) = [r for r in rows if r.parent_id is None and r.status == RequestLog.Status.SUCCESS]
    assert str(whole.request_id) == answer["orchestrator"]["request_id"]
    assert [r.parent_id for r in rows].count(whole.request_id) == 6
