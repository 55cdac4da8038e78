"""A chat message too long for every model's window is answered by parts (routing/plans), not
refused: the consumer sends `chat.progress` frames as each part ends and when the parts are
combined, the answer's badge says how many parts it was assembled from, and Stop cancels every
part, settling the budget for what the parts cost (the plan's row is the sum of its parts')."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from analytics.models import RequestLog
from chat.long_message import WHOLE_MESSAGE_REQUEST, message_split
from chat.models import Message
from chat.render import markdown_render
from providers.models import LLMModel
from routing.models import Budget, BudgetPeriod, BudgetReservation
from tests.chat.conftest import chat_path, chat_registry
from tests.chat.test_consumer import ask, connect, frames_until, wait_log
from tests.gateway.test_api_long_context import DOCUMENT, context_of, paragraph
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Which incidents happened?"
# The question, then the pasted report: 18,000 characters, 4,500 tokens by the routing
# estimate, more than the 2,000-token window of either model.
LONG_MESSAGE = f"{QUESTION}\n\n{DOCUMENT}"
FINAL = "Thirty incidents, all **minor**. <script>alert(1)</script>"
TIMEOUT_S = 15


def small_windows(upstream: UpstreamServer) -> None:
    """`alpha` (primary, $1.25 / $10 per Mtok) and `beta`: 2,000-token windows, answers of at
    most 100 tokens: the plan is the native API's (tests/gateway/test_api_long_context.py),
    five parts of at most 1,628 tokens and one combining step."""
    chat_registry(upstream)
    LLMModel.objects.update(context_window=2000, max_output_tokens=100)


def progress(rid: str, stage: str, done: int) -> dict[str, object]:
    return {
        "type": "chat.progress",
        "request_id": rid,
        "stage": stage,
        "parts_done": done,
        "parts": 5,
    }


async def rows_of(parent: str, count: int) -> list[RequestLog]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        rows = [row async for row in RequestLog.objects.filter(parent__request_id=parent)]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_a_message_no_window_can_hold_is_answered_by_parts_with_progress(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(small_windows)(upstream)
    part = Reply.sse(openai_sse(["ok"], usage=(1000, 20)))
    final = Reply.sse(openai_sse([FINAL], usage=(1000, 20)))
    upstream.reply("POST", chat_path("alpha"), part, part, part, part, part, final)
    _, socket = await connect("ana")

    await socket.send_json_to(ask(LONG_MESSAGE))
    frames = await frames_until(socket, "chat.done", "chat.error")

    rid = frames[0]["requests"][0]["request_id"]
    assert [f["type"] for f in frames] == ["chat.accepted", *["chat.progress"] * 7, "chat.done"]
    assert frames[1:-1] == [
        progress(rid, "parts", 0),
        progress(rid, "parts", 1),
        progress(rid, "parts", 2),
        progress(rid, "parts", 3),
        progress(rid, "parts", 4),
        progress(rid, "parts", 5),
        progress(rid, "combining", 5),
    ]
    done = frames[-1]
    # Model text is untrusted: the script is escaped, never markup.
    assert done["html"] == markdown_render(FINAL)
    assert "<script>" not in done["html"]
    assert "&lt;script&gt;" in done["html"]
    badge = done["badge"]
    assert badge["plan"] == {"parts": 5, "reduce_steps": 1, "calls": 6}
    assert badge["model_ref"] == "alpha:alpha-model"
    # Six calls of 1,000 input tokens at $1.25/Mtok and 20 output tokens at $10/Mtok.
    assert Decimal(badge["cost_usd"]) == Decimal("0.0087")
    assert (badge["input_tokens"], badge["output_tokens"]) == (6000, 120)

    # The parts carry the question and their share of the pasted report; then one step
    # combines the five answers.
    calls = list(upstream.requests)
    assert len(calls) == 6
    assert {context_of(call) for call in calls[:5]} == {
        "".join(paragraph(i) for i in range(0, 8)),
        "".join(paragraph(i) for i in range(7, 15)),
        "".join(paragraph(i) for i in range(14, 22)),
        "".join(paragraph(i) for i in range(21, 29)),
        "".join(paragraph(i) for i in range(28, 30)).rstrip("\n"),
    }
    assert all(
        call.json()["messages"][-1] == {"role": "user", "content": QUESTION} for call in calls
    )
    assert all(call.json()["max_tokens"] == 100 for call in calls)
    assert "### Part 5 of 5\nok" in calls[5].json()["messages"][0]["content"]

    saved = await Message.objects.aget(id=done["message_id"])
    assert (saved.content, saved.status, str(saved.request_id)) == (FINAL, "complete", rid)
    assert saved.badge["plan"] == {"parts": 5, "reduce_steps": 1, "calls": 6}
    whole = await wait_log(rid)
    assert (whole.entry_point, whole.status, whole.parent_id) == ("chat", "success", None)
    assert whole.cost_usd == Decimal("0.0087")
    children = await rows_of(rid, 6)
    assert len(children) == 6
    assert {row.cost_usd for row in children} == {Decimal("0.00145")}
    assert sum((row.cost_usd or Decimal(0) for row in children), Decimal(0)) == whole.cost_usd
    await socket.disconnect()


def _budget() -> Budget:
    return Budget.objects.create(name="chat-budget", limit_usd=Decimal("1"))


def _settled(budget: Budget) -> tuple[BudgetPeriod, list[RequestLog]]:
    """The budget's period once no hold is left and all six rows (plan and five parts) exist."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        held = BudgetReservation.objects.filter(state="held").count()
        if RequestLog.objects.count() >= 6 and held == 0:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # a late row or hold, were one coming, would land by now
    return BudgetPeriod.objects.get(budget=budget), list(RequestLog.objects.order_by("id"))


async def test_stop_cancels_every_part_and_settles_what_the_parts_cost(
    upstream: UpstreamServer,
) -> None:
    await database_sync_to_async(small_windows)(upstream)
    budget = await database_sync_to_async(_budget)()
    answered = Reply.sse(openai_sse(["ok"], usage=(1000, 20)))
    # The third call on sends the start of its answer, then nothing more.
    stalled = Reply.sse(openai_sse(["partial answer"], usage=None)).but(
        stall_after_chunks=2, stall_s=30
    )
    upstream.reply("POST", chat_path("alpha"), answered, answered, stalled)
    _, socket = await connect("ana")

    await socket.send_json_to(ask(LONG_MESSAGE))
    accepted = await socket.receive_json_from(timeout=TIMEOUT_S)
    rid = accepted["requests"][0]["request_id"]
    before = [await socket.receive_json_from(timeout=TIMEOUT_S) for _ in range(3)]
    # Two parts answered; the other four places hold parts 3 to 5, each with the start of its
    # answer received.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        if len(upstream.requests) >= 5 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    await socket.send_json_to({"type": "chat.cancel"})
    stopped = await frames_until(socket, "chat.done", "chat.error")

    assert before == [
        progress(rid, "parts", 0),
        progress(rid, "parts", 1),
        progress(rid, "parts", 2),
    ]
    assert len(stopped) == 1
    assert (stopped[0]["type"], stopped[0]["code"]) == ("chat.error", "CANCELLED")
    period, rows = await database_sync_to_async(_settled)(budget)
    # No part started after the Stop, and none was left running.
    assert len(upstream.requests) == 5
    (whole,) = [row for row in rows if row.parent_id is None]
    parts = [row for row in rows if row.parent_id is not None]
    assert str(whole.request_id) == rid
    assert (whole.status, whole.error_code) == ("cancelled", "CANCELLED")
    assert sorted(row.status for row in parts) == ["cancelled"] * 3 + ["success"] * 2
    assert {row.parent_id for row in parts} == {whole.request_id}
    answered_costs = [row.cost_usd for row in parts if row.status == "success"]
    assert answered_costs == [Decimal("0.00145")] * 2
    # A cancelled part is charged for what it had received: its prompt and "partial answer",
    # estimated from the texts (no usage arrived).
    cancelled = [row for row in parts if row.status == "cancelled"]
    assert {row.cost_state for row in cancelled} == {"estimated"}
    assert all(row.cost_usd and row.cost_usd > 0 for row in cancelled)
    assert all(row.output_tokens > 0 for row in cancelled)
    # The plan's row is the sum of its parts' rows, to the digit; the budget spent exactly
    # that, not the plan's whole hold, and holds nothing.
    total = sum((row.cost_usd or Decimal(0) for row in parts), Decimal(0))
    assert whole.cost_usd == total
    assert whole.cost_state == "estimated"
    assert whole.input_tokens == sum(row.input_tokens for row in parts)
    assert whole.output_tokens == sum(row.output_tokens for row in parts)
    assert (period.spent_usd, period.reserved_usd) == (total, Decimal(0))
    assert total < Decimal("0.015")
    saved = await Message.objects.aget(request_id=rid)
    assert (saved.status, saved.content, saved.badge) == (
        "partial",
        "",
        {"error_code": "CANCELLED"},
    )
    await socket.disconnect()


def test_a_long_message_is_split_into_its_request_and_its_document() -> None:
    report = "Line one.\n\nLine two."
    assert message_split(f"  Summarise this:\n\n{report}\n") == ("Summarise this:", report)
    long_head = "x" * 2001
    assert message_split(f"{long_head}\n\nWhat changed?") == ("What changed?", long_head)
    assert message_split(f"{long_head}\n\n{long_head}") == (
        WHOLE_MESSAGE_REQUEST,
        f"{long_head}\n\n{long_head}",
    )
    assert message_split("one paragraph only") == (WHOLE_MESSAGE_REQUEST, "one paragraph only")
