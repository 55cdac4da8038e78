"""Answers the client gets whole (non-streamed `/v1`, the native `/api/execute`): an upstream
that fails mid-answer is retried and falls back, since nothing was sent yet, and only the
answer that was used is billed. Through the live server, against the local upstream server."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from analytics.models import RequestLog
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CUT_MID_ANSWER = Reply.sse(openai_sse(["Half ", "an ", "answer"]), reset_after_chunks=3)
MALFORMED_MID_ANSWER = Reply.sse(
    openai_sse(["Half ", "an "], usage=(900, 90), done=False) + b"data: {not json\n\n"
)
# beta's prices: 0.15 in, 0.60 out per 1M tokens: 10 x 0.15 / 1M + 4 x 0.60 / 1M.
BETA_COST = Decimal("0.0000039")


def failed_attempt(code: str, discarded: str) -> dict[str, object]:
    return {"model": "alpha:alpha-model", "outcome": code, "discarded_chars": len(discarded)}


def attempts_of(row: RequestLog) -> list[dict[str, object]]:
    return [
        {k: v for k, v in record.items() if k not in ("status", "message")}
        for record in row.decision_trace["attempts"]
    ]


@pytest.mark.parametrize(
    ("alpha", "code"),
    [(CUT_MID_ANSWER, "MODEL_UNAVAILABLE"), (MALFORMED_MID_ANSWER, "INVALID_RESPONSE")],
    ids=["reset", "malformed_json"],
)
def test_non_streamed_completion_falls_back_when_the_primary_fails_mid_answer(
    live_server_url: str, upstream: UpstreamServer, alpha: Reply, code: str
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), alpha)
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["Whole."], usage=(10, 4))))

    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Say something"}]},
        headers={"Authorization": f"Bearer {new_key()}"},
        timeout=30,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Whole."
    assert body["model"] == "beta:beta-model"
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (10, 4)
    assert Decimal(body["orchestrator"]["cost_usd"]) == BETA_COST
    assert (body["orchestrator"]["attempts"], body["orchestrator"]["fallbacks"]) == (3, 1)
    assert response.headers["x-orchestrator-model"] == "beta:beta-model"
    (row,) = wait_rows(1, request_id=response.headers["x-orchestrator-request-id"])
    assert (row.status, row.error_code, row.model_name) == ("success", "", "beta-model")
    assert (row.attempts, row.fallbacks) == (3, 1)
    assert (row.input_tokens, row.output_tokens) == (10, 4)
    assert row.cost_usd == BETA_COST
    discarded = "Half an "
    assert attempts_of(row) == [
        failed_attempt(code, discarded),
        failed_attempt(code, discarded),
        {"model": "beta:beta-model", "outcome": "ok"},
    ]


def test_native_execute_falls_back_when_the_primary_fails_mid_answer(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), CUT_MID_ANSWER)
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["Whole."], usage=(10, 4))))

    response = httpx.post(
        f"{live_server_url}/api/execute",
        json={"prompt": "Say something"},
        headers={"Authorization": f"Bearer {new_key()}"},
        timeout=30,
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["response"], body["model_id"]) == ("Whole.", "beta:beta-model")
    assert Decimal(body["metrics"]["cost"]) == BETA_COST
    assert (body["metrics"]["input_tokens"], body["metrics"]["output_tokens"]) == (10, 4)
    (row,) = wait_rows(1, request_id=body["request_id"])
    assert (row.status, row.model_name, row.entry_point) == ("success", "beta-model", "native")
    assert row.cost_usd == BETA_COST
    assert attempts_of(row) == [
        failed_attempt("MODEL_UNAVAILABLE", "Half an "),
        failed_attempt("MODEL_UNAVAILABLE", "Half an "),
        {"model": "beta:beta-model", "outcome": "ok"},
    ]


def test_non_streamed_completion_failing_mid_answer_everywhere_is_not_billed(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), CUT_MID_ANSWER)
    upstream.reply("POST", chat_path("beta"), CUT_MID_ANSWER)

    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Say something"}]},
        headers={"Authorization": f"Bearer {new_key()}"},
        timeout=30,
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "MODEL_UNAVAILABLE"
    (row,) = wait_rows(1, request_id=response.headers["x-orchestrator-request-id"])
    assert (row.status, row.error_code) == ("error", "MODEL_UNAVAILABLE")
    assert (row.cost_usd, row.cost_state, row.output_tokens) == (None, "none", 0)
    assert [r["outcome"] for r in row.decision_trace["attempts"]] == ["MODEL_UNAVAILABLE"] * 4
