"""`long_context_stream`: a request with a long document, answered whole when a model can hold
it, else by parts (docs/routing.md, "Long context: plans by parts").

A plan answers the request once per part of the document, at most `plan_concurrency()` parts at
a time, then combines the partial answers in reduce steps (level by level when they are too
many for one step). Each part and step is a full request through `chat_stream`, journaled: its
own log row (linked to the plan's by `parent`), the key's rate limit, breaker, cache and
telemetry. The plan is one more request: its budget hold is taken for every call up front, its
row carries the calls' tokens and costs summed (every call's row: finished, failed or cancelled),
and it ends with one `Finished` or `Failed`. A cancelled plan (the client hung up, the chat's
Stop) cancels every call in flight and starts no other; its hold is settled for what its calls
cost. A caller may follow the plan as it goes (`PlanProgress`: each part done, then combining).

`long_message_stream` is the chat's way in: a conversation whose last message fits no window is
answered by parts of that message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from analytics.money import usd_json
from analytics.pricing import CostState
from core.threads import in_thread
from providers.adapters.types import Message, Usage
from routing.budgets import BudgetExceeded, budget_reserve
from routing.budgets.amounts import usd_quantize
from routing.hang_up import hang_up_pass
from routing.pipeline.admission import hold_taking
from routing.pipeline.events import Event, Failed, Finished, GatewayRequest, RateLimitInfo
from routing.pipeline.journal import journal_open, journaled
from routing.pipeline.ledger import Ledger, RequestStatus, finish
from routing.plans.prepare import (
    PlanReady,
    PlanRefused,
    plan_needed,
    plan_prepare,
    request_fits,
    with_document,
)
from routing.plans.shape import OVERLAP_TOKENS
from routing.services import chat_stream

PLAN_CONCURRENCY = 4
RATE_LIMIT_RETRIES = 3
"""A call refused by the key's rate limit waits its `retry_after` and goes again this often."""
RATE_LIMIT_WAIT_MAX_S = 60.0


def plan_concurrency() -> int:
    """At most this many calls of one plan run at once (`ORCHESTRATOR_PLAN_CONCURRENCY`)."""
    return max(1, int(getattr(settings, "ORCHESTRATOR_PLAN_CONCURRENCY", PLAN_CONCURRENCY)))


@dataclass(frozen=True)
class PlanProgress:
    """How far a plan has got: `parts_done` of `parts` answered (`stage` "parts", sent when the
    plan starts and as each part ends), then "combining" once the partial answers are combined."""

    stage: str
    parts_done: int
    parts: int


ProgressSink = Callable[[PlanProgress], Awaitable[None]]
MessageSplit = Callable[[str], tuple[str, str]]


async def long_context_stream(
    request: GatewayRequest, *, document: str
) -> AsyncGenerator[Event, None]:
    """The events of `request` (its messages without the document) with `document` as its
    context: `chat_stream`'s when a model can hold them whole, else the plan's."""
    whole = replace(request, messages=with_document(request, document))
    # A hang-up is held back until a stream begins (routing/hang_up), so none lands here.
    prepared = await in_thread(_plan_for)(request, document)
    stream = chat_stream(whole) if prepared is None else _plan_stream(request, whole, prepared)
    async with contextlib.aclosing(stream):
        async for event in stream:
            yield event


async def long_message_stream(
    whole: GatewayRequest, *, split: MessageSplit, progress: ProgressSink | None = None
) -> AsyncGenerator[Event, None]:
    """The events of `whole` (a conversation, its last message the user's): `chat_stream`'s when
    a model can hold it, else a plan over its last message, which `split` cuts into the request's
    own words and the document. The plan's calls carry the system prompt and those words (not
    the earlier turns); its row is `whole`'s. `progress` hears of each part as it ends."""
    prepared = await in_thread(_message_plan_for)(whole, split)
    stream = (
        chat_stream(whole)
        if prepared is None
        else _plan_stream(prepared[0], whole, prepared[1], progress)
    )
    async with contextlib.aclosing(stream):
        async for event in stream:
            yield event


def _message_plan_for(
    whole: GatewayRequest, split: MessageSplit
) -> tuple[GatewayRequest, PlanReady | PlanRefused] | None:
    """The request a plan answers and the plan, when `whole` fits no window and its last
    message can be read by parts; None to run it whole (refused as any request too long)."""
    if not whole.messages or whole.messages[-1].role != "user" or request_fits(whole):
        return None
    words, document = split(whole.messages[-1].content)
    if not document:
        return None
    system = tuple(m for m in whole.messages if m.role == "system")
    request = replace(whole, messages=(*system, Message(role="user", content=words)))
    prepared = plan_prepare(request, document)
    return None if prepared is None else (request, prepared)


def _plan_for(request: GatewayRequest, document: str) -> PlanReady | PlanRefused | None:
    """The plan, or its refusal, when no model can take the request whole; None to run it whole
    (it fits, or no plan can be made and it is refused as any request too long)."""
    if not plan_needed(request, document):
        return None
    return plan_prepare(request, document)


class PartFailed(Exception):
    def __init__(self, failed: Failed, label: str) -> None:
        super().__init__(failed.message)
        self.failed = failed
        self.label = label


@dataclass
class PlanRun:
    """The calls of one plan as they end (what its row sums)."""

    finished: list[Finished] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    ended: list[Ledger] = field(default_factory=list)
    """Every call's ledger once its outcome is known (finished, failed or cancelled): what the
    plan's row sums, so it equals the sum of its calls' rows."""
    progress: ProgressSink | None = None
    request_ids: dict[str, list[str]] = field(default_factory=dict)
    rate_limit: RateLimitInfo | None = None
    stopped: bool = False
    """A call failed: no other call starts (those in flight are being cancelled)."""


async def _plan_stream(
    request: GatewayRequest,
    whole: GatewayRequest,
    prepared: PlanReady | PlanRefused,
    progress: ProgressSink | None = None,
) -> AsyncGenerator[Event, None]:
    ledger = Ledger(request=whole, created_at=timezone.now(), began=time.perf_counter())
    run = PlanRun(progress=progress)
    terminal: Event | None = None
    try:
        hang_up_pass()
        await in_thread(journal_open)(request=whole)
        terminal = await _plan_answer(request, prepared, ledger, run)
        yield terminal
    except (asyncio.CancelledError, GeneratorExit):
        if terminal is None:
            ledger.status = RequestStatus.CANCELLED
            ledger.error_code = "CANCELLED"
            _sums_apply(ledger, run.ended)
        raise
    finally:
        await asyncio.shield(finish(ledger))


async def _plan_answer(
    request: GatewayRequest, prepared: PlanReady | PlanRefused, ledger: Ledger, run: PlanRun
) -> Finished | Failed:
    if isinstance(prepared, PlanRefused):
        ledger.decision = prepared.decision
        return ledger.fail(
            RequestStatus.RATE_LIMITED, prepared.code, prepared.message, details=prepared.details
        )
    ready = prepared
    ledger.decision, ledger.config = ready.decision, ready.config
    ledger.chain.model = ready.model
    ready.decision.trace["plan"] = _plan_trace(ready, run)
    caller = request.caller
    try:
        ledger.reservation = await hold_taking(
            in_thread(budget_reserve)(
                max_cost_usd=ready.max_cost_usd,
                api_key_id=caller.api_key_id,
                user_id=caller.user_id,
                model_id=ready.model.id,
                request_id=request.request_id,
            ),
            ledger,
        )
    except BudgetExceeded as exc:
        return ledger.fail(
            RequestStatus.BUDGET_REFUSED,
            "PLAN_EXCEEDS_BUDGET",
            f"this document needs {ready.calls} model calls ({len(ready.parts)} parts and "
            f"{len(ready.steps)} combining steps) on {ready.model.ref}, which may cost up to "
            f"{_usd(ready.max_cost_usd)} USD: {exc}",
            details={
                "parts": len(ready.parts),
                "calls": ready.calls,
                "model": ready.model.ref,
                "max_cost_usd": usd_json(ready.max_cost_usd),
                "budget": exc.budget_name,
                "reason": exc.reason,
            },
        )
    try:
        final = await _calls_run(request, ready, run)
    except PartFailed as exc:
        _sums_apply(ledger, run.ended)
        failed = exc.failed
        status = (
            RequestStatus.RATE_LIMITED
            if failed.code == "RATE_LIMIT_EXCEEDED"
            else RequestStatus.BUDGET_REFUSED
            if failed.code == "BUDGET_EXCEEDED"
            else RequestStatus.ERROR
        )
        return ledger.fail(
            status,
            failed.code,
            f"{exc.label} failed: {failed.message}",
            details={"failed_request_id": str(failed.request_id), **failed.details},
            retry_after_s=failed.retry_after_s,
        )
    _sums_apply(ledger, run.ended)
    ledger.chain.text = final.text
    return ledger.finished(
        ready.model, finish_reason=final.finish_reason, cached=False, rate_limit=run.rate_limit
    )


def _usd(amount: Decimal | None) -> str:
    return "an unknown amount of" if amount is None else f"{amount:f}"


def _plan_trace(ready: PlanReady, run: PlanRun) -> dict[str, Any]:
    """The plan on the request's trace (and the native API's `plan`); the calls' request ids
    are filled in as they start."""
    shape = ready.shape
    return {
        "parts": len(ready.parts),
        "reduce_steps": len(ready.steps),
        "calls": ready.calls,
        "model": ready.model.ref,
        "concurrency": plan_concurrency(),
        "part_tokens": shape.part_tokens,
        "overlap_tokens": OVERLAP_TOKENS,
        "part_output_tokens": shape.part_output_tokens,
        "fan_in": shape.fan_in,
        "max_cost_usd": usd_json(ready.max_cost_usd),
        "max_tokens": ready.max_tokens,
        "boundaries": [[part.start, part.end] for part in ready.parts],
        "request_ids": run.request_ids,
    }


def _part_messages(request: GatewayRequest, text: str, index: int, count: int) -> list[Message]:
    note = (
        f"Context (part {index + 1} of {count} of a document too long to read at once; answer "
        "from this part only, and say so briefly when it holds nothing relevant):\n"
    )
    return _framed(request, Message(role="system", content=note + text))


def _reduce_messages(
    request: GatewayRequest, answers: Sequence[str], labels: Sequence[str], final: bool
) -> list[Message]:
    sections = "\n\n".join(
        f"### {label}\n{answer}" for label, answer in zip(labels, answers, strict=True)
    )
    combine = (
        "Combine them into one answer to the request, without mentioning the parts."
        if final
        else "Combine them into one answer to the request, keeping every relevant detail."
    )
    note = (
        "A document too long to read at once was read in parts. The answers to the request "
        f"from each part, in document order:\n\n{sections}\n\n{combine}"
    )
    return _framed(request, Message(role="system", content=note))


def _framed(request: GatewayRequest, context: Message) -> list[Message]:
    messages = list(request.messages)
    at = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    messages.insert(at, context)
    return messages


async def _calls_run(request: GatewayRequest, ready: PlanReady, run: PlanRun) -> Finished:
    """Every part, then every level of reduce steps; the last call's `Finished`."""
    limit = asyncio.Semaphore(plan_concurrency())
    count = len(ready.parts)
    part_ids = run.request_ids.setdefault("parts", [])
    part_calls = []
    for part in ready.parts:
        call = _call_request(
            request, ready, _part_messages(request, part.text, part.index, count), False
        )
        part_ids.append(str(call.request_id))
        part_calls.append((call, f"part {part.index + 1} of {count}"))
    await _progress(run, PlanProgress("parts", 0, count))
    answers = await _level_run(part_calls, limit, run, parts=count)
    level = 1
    if len(answers) > 1:
        await _progress(run, PlanProgress("combining", count, count))
    while len(answers) > 1:
        steps = [step for step in ready.steps if step.level == level]
        step_ids = run.request_ids.setdefault(f"reduce_{level}", [])
        calls = []
        for step in steps:
            labels = [
                f"Part {i + 1} of {len(answers)}" if level == 1 else f"Section {i + 1}"
                for i in step.inputs
            ]
            messages = _reduce_messages(
                request, [answers[i].text for i in step.inputs], labels, step.final
            )
            call = _call_request(request, ready, messages, step.final)
            step_ids.append(str(call.request_id))
            calls.append((call, f"combining step {step.index + 1} of level {level}"))
        answers = await _level_run(calls, limit, run)
        level += 1
    return answers[0]


def _call_request(
    request: GatewayRequest, ready: PlanReady, messages: list[Message], final: bool
) -> GatewayRequest:
    shape = ready.shape
    return replace(
        request,
        messages=tuple(messages),
        model=ready.model.ref,
        fallback_chain=(),
        max_tokens=shape.final_output_tokens if final else shape.part_output_tokens,
        request_id=uuid.uuid4(),
        parent_request_id=request.request_id,
        buffered=True,
    )


async def _progress(run: PlanRun, progress: PlanProgress) -> None:
    if run.progress is not None:
        await run.progress(progress)


async def _level_run(
    calls: list[tuple[GatewayRequest, str]],
    limit: asyncio.Semaphore,
    run: PlanRun,
    *,
    parts: int | None = None,
) -> list[Finished]:
    """The answers of `calls`, in order; the first failure cancels the others. `parts`: these
    are the plan's parts, and the progress hears of each as it ends."""
    done = 0

    async def answered(call: GatewayRequest, label: str) -> Finished:
        nonlocal done
        finished = await _call_answer(call, label, limit, run)
        if parts is not None:
            done += 1
            await _progress(run, PlanProgress("parts", done, parts))
        return finished

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(answered(call, label)) for call, label in calls]
    except* PartFailed as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


async def _call_answer(
    call: GatewayRequest, label: str, limit: asyncio.Semaphore, run: PlanRun
) -> Finished:
    async with limit:
        if run.stopped:
            # Woken by the failed call's freed place, before the cancellation reached it.
            raise asyncio.CancelledError
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            if attempt:
                call = replace(call, request_id=uuid.uuid4())
            terminal = await _terminal(call, run)
            if isinstance(terminal, Finished):
                run.finished.append(terminal)
                run.rate_limit = terminal.rate_limit or run.rate_limit
                return terminal
            run.failed.append(terminal)
            if terminal.code != "RATE_LIMIT_EXCEEDED" or attempt == RATE_LIMIT_RETRIES:
                run.stopped = True
                raise PartFailed(terminal, label)
            await asyncio.sleep(min(terminal.retry_after_s or 1.0, RATE_LIMIT_WAIT_MAX_S))
    raise AssertionError("unreachable")


async def _terminal(call: GatewayRequest, run: PlanRun) -> Finished | Failed:
    events = journaled(chat_stream(call, ended=run.ended.append), request=call)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Finished | Failed):
                return event
    raise RuntimeError("chat_stream ended without a terminal event")


def _sums_apply(ledger: Ledger, calls: Sequence[Ledger]) -> None:
    """The plan's row: its calls' tokens, costs and attempts summed (exact, in Decimal), from
    every call that has ended: finished, failed (nothing, or what it was charged) or cancelled
    (the part of its answer it had received). A call that cost nothing adds nothing."""
    usage = Usage(
        input=sum(c.usage.input for c in calls),
        output=sum(c.usage.output for c in calls),
        cached=sum(c.usage.cached for c in calls),
    )
    ledger.usage = usage
    ledger.chain.attempts = sum(c.chain.attempts for c in calls)
    ledger.chain.fallbacks = sum(c.chain.fallbacks for c in calls)
    charged = [c for c in calls if c.cost_state != CostState.NONE.value]
    states = {c.cost_state for c in charged}
    costs = [c.cost_usd for c in charged]
    baselines = [c.baseline_cost_usd for c in charged]
    if not charged:
        ledger.cost_usd, ledger.cost_state = None, CostState.NONE.value
    elif CostState.UNKNOWN_PRICE.value in states or any(c is None for c in costs):
        ledger.cost_usd, ledger.cost_state = None, CostState.UNKNOWN_PRICE.value
    else:
        # Each as its row stores it (8 places), so the plan's row is their sum to the digit.
        ledger.cost_usd = sum((usd_quantize(c) for c in costs if c is not None), Decimal(0))
        ledger.cost_state = (
            CostState.ESTIMATED.value
            if CostState.ESTIMATED.value in states
            else CostState.REPORTED.value
        )
    ledger.baseline_cost_usd = (
        sum((usd_quantize(b) for b in baselines if b is not None), Decimal(0))
        if charged and all(b is not None for b in baselines)
        else None
    )
