"""Batches: many native-API tasks run by Celery workers, with retries and a dead-letter list.

Each item is one Celery task (`routing.tasks.batch_item_run`). A retryable failure (the upstream
was down, slow or rate limited) is retried with backoff; a failure that no retry can fix (a bad
request, a budget refusal) or one that outlives its retries is dead-lettered, and the admin can
send a dead letter back to the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from analytics.money import usd_json
from providers.adapters.types import Message
from routing.models import ApiKey, Batch, BatchItem, DeadLetter
from routing.pipeline.events import Caller, Failed, Finished, GatewayRequest, RateLimitInfo
from routing.pipeline.journal import journal_close, journal_loop_idle
from routing.plans.prepare import document_message
from routing.request_metadata import RequestMetadata
from routing.services import chat_stream

RETRYABLE_CODES = frozenset(
    {"SERVICE_UNAVAILABLE", "MODEL_UNAVAILABLE", "MODEL_ERROR", "TIMEOUT", "RATE_LIMIT_EXCEEDED"}
)
MAX_ATTEMPTS = 3


def task_messages(task: dict[str, Any]) -> tuple[Message, ...]:
    """The conversation a native task describes: system prompt, context, then the prompt or
    the given messages. Context is injected as a system message: a text as it is, an object as
    `key: value` lines."""
    messages: list[Message] = []
    if task.get("system_prompt"):
        messages.append(Message(role="system", content=task["system_prompt"]))
    context = task.get("context")
    if isinstance(context, str) and context:
        messages.append(document_message(context))
    elif context:
        lines = "\n".join(f"- {key}: {value}" for key, value in context.items())
        messages.append(Message(role="system", content=f"Context:\n{lines}"))
    for message in task.get("messages") or ():
        messages.append(Message(role=message["role"], content=message["content"]))
    if task.get("prompt"):
        messages.append(Message(role="user", content=task["prompt"]))
    return tuple(messages)


def task_request(
    task: dict[str, Any], *, caller: Caller, entry_point: str, request_id: uuid.UUID | None = None
) -> GatewayRequest:
    metadata = task.get("metadata") or {}
    return GatewayRequest(
        messages=task_messages(task),
        entry_point=entry_point,
        caller=caller,
        model=task.get("model_id") or None,
        fallback_chain=tuple(task.get("fallback_chain") or ()),
        task_type=task.get("task_type") or None,
        max_tokens=task.get("max_tokens"),
        temperature=task.get("temperature"),
        session_id=task.get("session_id") or "",
        use_cache=task.get("cache") is not False and bool(metadata.get("cache", True)),
        # Checked by the door (gateway/api.py) before the task was stored.
        metadata=RequestMetadata(
            end_user=str(metadata.get("user_id") or ""),
            project=str(metadata.get("project_id") or ""),
            tags=tuple(metadata.get("tags") or ()),
            local_only=metadata.get("local_only") is True,
        ),
        request_id=request_id or uuid.uuid4(),
        buffered=True,
    )


def agent_checks(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The agents a decision read, keyed by agent name, in the seed designs' shape: `proceed`,
    `state`, `target` (the agent's recommendation: local, cloud or ""), `reason`, `metrics`,
    plus `source` (sampled or request) and `targets` (per-target states, by target)."""
    checks: dict[str, dict[str, Any]] = {}
    for entry in trace.get("agents", []):
        check = checks.setdefault(
            entry["agent"],
            {
                "proceed": True,
                "state": "unknown",
                "target": "",
                "reason": "",
                "metrics": {},
                "source": entry.get("source", "sampled"),
                "targets": {},
            },
        )
        if entry["target"]:
            check["targets"][entry["target"]] = {
                "state": entry["state"],
                "reason": entry["reason"],
                "metrics": entry["metrics"],
            }
        else:
            check.update(
                proceed=entry.get("proceed", True),
                state=entry["state"],
                target=entry.get("recommend", ""),
                reason=entry["reason"],
                metrics=entry["metrics"],
            )
    return checks


def execute_result(event: Finished) -> dict[str, Any]:
    """The native API's answer for a finished request (also stored on batch items)."""
    return {
        "request_id": str(event.request_id),
        "response": event.text,
        "model_id": event.model_ref,
        "agent_checks": agent_checks(event.decision_trace),
        "metrics": {
            "total_latency": event.latency_ms / 1000,
            "time_to_first_token": (
                None
                if event.time_to_first_token_ms is None
                else event.time_to_first_token_ms / 1000
            ),
            "input_tokens": event.usage.input + event.usage.cached,
            "output_tokens": event.usage.output,
            "cost": usd_json(event.cost_usd),
            "cost_state": event.cost_state,
            "baseline_cost": usd_json(event.baseline_cost_usd),
        },
        "routing": event.decision_trace,
        # An answer assembled from parts of a long document (routing/plans) says so.
        "plan": event.decision_trace.get("plan"),
        "cached": event.cached,
        "rate_limit": rate_limit_json(event.rate_limit),
    }


def rate_limit_json(info: RateLimitInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    remaining = {"requests": info.remaining_requests, "tokens": info.remaining_tokens}
    return {"remaining": remaining, "reset": info.reset_s, **info.as_json()}


def _caller_for(batch: Batch) -> Caller:
    key: ApiKey | None = batch.api_key
    if key is not None:
        return Caller(
            user_id=key.owner_id,
            api_key_id=key.pk,
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
            local_only=key.local_only,
        )
    return Caller(user_id=batch.user_id)


def batch_create(
    *,
    caller: Caller,
    tasks: list[dict[str, Any]],
    priority: int = 5,
    enqueue: Callable[[int, int], None],
) -> Batch:
    """Store the batch and its items; each item is enqueued once the rows are committed."""
    with transaction.atomic():
        batch = Batch.objects.create(
            api_key_id=caller.api_key_id,
            user_id=caller.user_id if caller.api_key_id is None else None,
            priority=priority,
            total=len(tasks),
        )
        items = BatchItem.objects.bulk_create(
            BatchItem(batch=batch, index=index, task=task) for index, task in enumerate(tasks)
        )
        for item in items:
            transaction.on_commit(partial(enqueue, item.pk, priority))
    return batch


@dataclass(frozen=True)
class ItemRun:
    state: str  # BatchItem.State value, or "retry"
    error_code: str = ""


def batch_item_execute(*, item_id: int, final_attempt: bool) -> ItemRun:
    """Run one item once. Idempotent: an item already finished is left as it is."""
    claimed = BatchItem.objects.filter(
        pk=item_id, state__in=[BatchItem.State.PENDING, BatchItem.State.RUNNING]
    ).update(state=BatchItem.State.RUNNING, attempts=F("attempts") + 1)
    if not claimed:
        return ItemRun(state=BatchItem.objects.get(pk=item_id).state)
    item = BatchItem.objects.select_related("batch", "batch__api_key").get(pk=item_id)
    request = task_request(
        item.task, caller=_caller_for(item.batch), entry_point="batch", request_id=uuid.uuid4()
    )
    terminal = async_to_sync(_run)(request)
    item.request_id = request.request_id
    if isinstance(terminal, Finished):
        item.state = BatchItem.State.SUCCEEDED
        item.result = execute_result(terminal)
        item.error_code = item.error_message = ""
        item.save(update_fields=["state", "result", "error_code", "error_message", "request_id"])
        _count(item, succeeded=1)
        return ItemRun(state=item.state)
    item.error_code, item.error_message = terminal.code, terminal.message
    if terminal.code in RETRYABLE_CODES and not final_attempt:
        item.save(update_fields=["error_code", "error_message", "request_id"])
        return ItemRun(state="retry", error_code=terminal.code)
    with transaction.atomic():
        item.state = BatchItem.State.DEAD
        item.save(update_fields=["state", "error_code", "error_message", "request_id"])
        DeadLetter.objects.update_or_create(
            item=item,
            defaults={
                "error_code": terminal.code,
                "error_message": terminal.message,
                "attempts": item.attempts,
            },
        )
        _count(item, failed=1)
    return ItemRun(state=item.state, error_code=terminal.code)


async def _run(request: GatewayRequest) -> Finished | Failed:
    terminal: Finished | Failed | None = None
    async for event in chat_stream(request):
        if isinstance(event, Finished | Failed):
            terminal = event
    await journal_close(request_id=request.request_id)
    # This loop ends with the item: the close is sent before it does.
    await journal_loop_idle()
    if terminal is None:
        raise RuntimeError("chat_stream ended without a terminal event")
    return terminal


def _count(item: BatchItem, *, succeeded: int = 0, failed: int = 0) -> None:
    Batch.objects.filter(pk=item.batch_id).update(
        succeeded=F("succeeded") + succeeded, failed=F("failed") + failed
    )
    Batch.objects.filter(
        pk=item.batch_id, finished_at__isnull=True, total__lte=F("succeeded") + F("failed")
    ).update(finished_at=timezone.now())


def dead_letter_retry(*, dead_letter: DeadLetter, enqueue: Callable[[int, int], None]) -> None:
    """Send a dead-lettered item back to the queue for a fresh set of attempts."""
    with transaction.atomic():
        item = BatchItem.objects.select_for_update().get(pk=dead_letter.item_id)
        if item.state != BatchItem.State.DEAD:
            return
        BatchItem.objects.filter(pk=item.pk).update(state=BatchItem.State.PENDING, attempts=0)
        Batch.objects.filter(pk=item.batch_id).update(failed=F("failed") - 1, finished_at=None)
        DeadLetter.objects.filter(pk=dead_letter.pk).update(
            retried_at=timezone.now(), retry_count=F("retry_count") + 1
        )
        priority = Batch.objects.values_list("priority", flat=True).get(pk=item.batch_id)
        transaction.on_commit(lambda: enqueue(item.pk, priority))


@dataclass(frozen=True)
class BatchItemView:
    index: int
    state: str
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, str] | None
    request_id: str | None


@dataclass(frozen=True)
class BatchProgress:
    id: str
    state: str
    total: int
    succeeded: int
    failed: int
    pending: int
    progress_pct: int
    created_at: str
    finished_at: str | None
    items: tuple[BatchItemView, ...]


def batch_progress(*, batch_id: uuid.UUID, caller: Caller) -> BatchProgress | None:
    """A batch the caller may see (its own key's or user's; staff see all), with its items."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return None
    owns = (caller.api_key_id is not None and batch.api_key_id == caller.api_key_id) or (
        caller.api_key_id is None and caller.user_id is not None and batch.user_id == caller.user_id
    )
    if not owns and not caller.is_staff:
        return None
    items = tuple(
        BatchItemView(
            index=item.index,
            state=item.state,
            attempts=item.attempts,
            result=item.result,
            error=(
                {"code": item.error_code, "message": item.error_message}
                if item.error_code
                else None
            ),
            request_id=str(item.request_id) if item.request_id else None,
        )
        for item in batch.items.order_by("index")
    )
    done = batch.succeeded + batch.failed
    return BatchProgress(
        id=str(batch.id),
        state=batch.state,
        total=batch.total,
        succeeded=batch.succeeded,
        failed=batch.failed,
        pending=batch.total - done,
        progress_pct=done * 100 // batch.total if batch.total else 100,
        created_at=batch.created_at.isoformat(),
        finished_at=batch.finished_at.isoformat() if batch.finished_at else None,
        items=items,
    )
