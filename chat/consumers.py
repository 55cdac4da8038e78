"""The chat websocket: frames in, the gateway's events out as `chat.*` envelopes.

Each answer streams in its own task, so `chat.cancel` and a disconnect stop it at once; the
gateway cancels the upstream call and still logs the request when its consumer is cancelled.
A message too long for every model's window is answered by parts (routing/plans): the plan's
progress goes out as `chat.progress` frames, and cancelling stops every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from dataclasses import replace
from typing import Any

from channels.db import database_sync_to_async

from chat.badges import badge_from
from chat.explain import decision_explain
from chat.long_message import message_split
from chat.models import Conversation, Message
from chat.protocol import ChatRequestFrame, FrameError, cancel_target
from chat.render import markdown_render
from chat.services import TurnPlan, TurnSlot, answer_record, turn_begin
from core.consumers import AuthenticatedJsonConsumer
from routing.pipeline.events import (
    Caller,
    Delta,
    Event,
    Failed,
    Fallback,
    Finished,
    GatewayRequest,
    Started,
)
from routing.pipeline.journal import journaled
from routing.plans.run import PlanProgress, long_message_stream
from routing.request_metadata import END_USER_MAX_CHARS, NO_METADATA, RequestMetadata

logger = logging.getLogger(__name__)
# How long a closing socket waits for its cancelled answers to be saved.
DISCONNECT_GRACE_S = 10.0

_turn_begin = database_sync_to_async(turn_begin)
_answer_record = database_sync_to_async(answer_record)


class ChatConsumer(AuthenticatedJsonConsumer):
    async def on_authenticated(self) -> None:
        self.runs: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Answers whose last envelope is not sent yet; a task outlives its answer a little
        # while the gateway writes the request log.
        self.unanswered: set[uuid.UUID] = set()
        self.open = True

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        try:
            if content["type"] == "chat.request":
                await self.chat_request(ChatRequestFrame.parse(content))
            elif content["type"] == "chat.cancel":
                await self.chat_cancel(cancel_target(content))
            else:
                await self.send_error(
                    "INVALID_REQUEST", f"unknown message type {content['type']!r}"
                )
        except FrameError as error:
            await self.send_error("INVALID_REQUEST", str(error))

    async def chat_request(self, frame: ChatRequestFrame) -> None:
        if self.unanswered:
            await self.send_error("INVALID_REQUEST", "an answer is still streaming; stop it first")
            return
        user = self.scope["user"]
        try:
            plan = await _turn_begin(
                owner_id=user.id,
                conversation_id=frame.conversation_id,
                content=frame.content,
                model_choice=frame.model,
                compare_models=frame.compare,
            )
        except Conversation.DoesNotExist:
            await self.send_error("NOT_FOUND", "no such conversation")
            return
        caller = Caller(user_id=user.id, is_staff=user.is_staff)
        await self.send_json(
            {
                "type": "chat.accepted",
                "conversation_id": plan.conversation_id,
                "title": plan.title,
                "created": plan.created,
                "user_message_id": plan.user_message_id,
                "compare_group": str(plan.compare_group) if plan.compare_group else None,
                "requests": [_requested(s) for s in plan.slots],
            }
        )
        if plan.dropped_messages:
            await self.send_json(
                {
                    "type": "chat.trimmed",
                    "conversation_id": plan.conversation_id,
                    "dropped_messages": plan.dropped_messages,
                    "kept_messages": len(plan.messages),
                    "budget_tokens": plan.budget_tokens,
                }
            )
        for slot in plan.slots:
            metadata = replace(frame.metadata, end_user=user.get_username()[:END_USER_MAX_CHARS])
            task = asyncio.create_task(
                self._answer(plan, slot, caller, frame.cache, metadata=metadata)
            )
            self.runs[slot.request_id] = task
            self.unanswered.add(slot.request_id)
            task.add_done_callback(functools.partial(self._forget, slot.request_id))

    def _forget(self, request_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self.runs.pop(request_id, None)

    async def chat_cancel(self, request_id: uuid.UUID | None) -> None:
        for rid, task in list(self.runs.items()):
            if rid in self.unanswered and (request_id is None or rid == request_id):
                task.cancel()

    async def disconnect(self, code: int) -> None:
        self.open = False
        tasks = list(getattr(self, "runs", {}).values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=DISCONNECT_GRACE_S)

    async def send_json(self, content: Any, close: bool = False) -> None:
        if getattr(self, "open", True):
            await super().send_json(content, close=close)

    async def _answer(
        self,
        plan: TurnPlan,
        slot: TurnSlot,
        caller: Caller,
        use_cache: bool = True,
        *,
        metadata: RequestMetadata = NO_METADATA,
    ) -> None:
        request = GatewayRequest(
            messages=plan.messages,
            entry_point="chat",
            caller=caller,
            model=slot.model,
            session_id=f"conversation-{plan.conversation_id}",
            conversation_id=plan.conversation_id,
            sticky_model_id=plan.sticky_model_id,
            max_tokens=slot.max_tokens,
            temperature=slot.temperature,
            request_id=slot.request_id,
            use_cache=use_cache,
            metadata=metadata,
        )
        answer = _Answer(plan=plan, slot=slot)

        async def progress(step: PlanProgress) -> None:
            await self.send_json(_progress(answer.rid, step))

        try:
            # Journaled like every other door: a process that dies between the answer and its
            # log row still gets the row written by the sweep.
            stream = journaled(
                long_message_stream(request, split=message_split, progress=progress),
                request=request,
            )
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    envelope = await answer.translate(event)
                    if isinstance(event, Finished | Failed):
                        self.unanswered.discard(slot.request_id)
                    await self.send_json(envelope)
                    if isinstance(event, Finished) and answer.switch is not None:
                        await self.send_json(answer.switch)
        except asyncio.CancelledError:
            if slot.request_id in self.unanswered:
                self.unanswered.discard(slot.request_id)
                await self.send_json(await answer.stopped())
            raise
        except Exception:
            # The socket outlives a broken stream; the client gets an error frame, not a hang-up.
            logger.exception("chat stream %s failed", slot.request_id)
            if slot.request_id in self.unanswered:
                self.unanswered.discard(slot.request_id)
                await self.send_json(answer.error("SERVICE_UNAVAILABLE", "the answer failed", None))


class _Answer:
    """One answer being streamed: the text so far, the fallbacks taken, and the envelope for
    each of the gateway's events. Saving the answer is the chat service's job."""

    def __init__(self, *, plan: TurnPlan, slot: TurnSlot) -> None:
        self.plan = plan
        self.slot = slot
        self.rid = str(slot.request_id)
        self.parts: list[str] = []
        self.fallbacks: list[Fallback] = []
        self.model_ref = ""
        self.switch: dict[str, Any] | None = None

    async def translate(self, event: Event) -> dict[str, Any]:
        if isinstance(event, Delta):
            self.parts.append(event.text)
            return {"type": "chat.delta", "request_id": self.rid, "text": event.text}
        if isinstance(event, Started):
            self.model_ref = event.model_ref
            return _started(event)
        if isinstance(event, Fallback):
            self.fallbacks.append(event)
            return _fallback(self.rid, event)
        if isinstance(event, Finished):
            return await self._finished(event)
        status = Message.Status.PARTIAL if self.parts else Message.Status.FAILED
        message_id = await self._save(status, {"error_code": event.code})
        return self.error(event.code, event.message, message_id)

    async def _finished(self, event: Finished) -> dict[str, Any]:
        self.parts[:] = [event.text]
        self.model_ref = event.model_ref
        badge = badge_from(event, self.fallbacks)
        if self.slot.temperature is not None:
            badge["temperature"] = self.slot.temperature
        saved = await _answer_record(
            conversation_id=self.plan.conversation_id,
            request_id=self.slot.request_id,
            content=event.text,
            status=Message.Status.COMPLETE,
            model_ref=event.model_ref,
            badge=badge,
            compare_group=self.plan.compare_group,
            model_id=event.model_id,
        )
        if saved.switched_from:
            self.switch = {
                "type": "chat.switched",
                "conversation_id": self.plan.conversation_id,
                "request_id": self.rid,
                "from_model": saved.switched_from,
                "to_model": saved.switched_to,
                "reason": saved.switch_reason,
            }
        return {
            "type": "chat.done",
            "request_id": self.rid,
            "message_id": saved.message_id,
            "html": markdown_render(event.text),
            "badge": badge,
            "explanation": decision_explain(
                event.decision_trace, model_ref=event.model_ref, cached=event.cached
            ),
        }

    async def stopped(self) -> dict[str, Any]:
        message_id = await self._save(Message.Status.PARTIAL, {"error_code": "CANCELLED"})
        return self.error("CANCELLED", "stopped", message_id)

    async def _save(self, status: str, badge: dict[str, Any]) -> int:
        saved = await _answer_record(
            conversation_id=self.plan.conversation_id,
            request_id=self.slot.request_id,
            content="".join(self.parts),
            status=status,
            model_ref=self.model_ref,
            badge=badge,
            compare_group=self.plan.compare_group,
        )
        return saved.message_id

    def error(self, code: str, message: str, message_id: int | None) -> dict[str, Any]:
        text = "".join(self.parts)
        return {
            "type": "chat.error",
            "request_id": self.rid,
            "code": code,
            "message": message,
            "partial": bool(text),
            "message_id": message_id,
            "html": markdown_render(text) if text else "",
        }


def _requested(slot: TurnSlot) -> dict[str, Any]:
    requested: dict[str, Any] = {"request_id": str(slot.request_id), "model": slot.model}
    if slot.temperature is not None:
        requested["temperature"] = slot.temperature
    return requested


def _started(event: Started) -> dict[str, Any]:
    return {
        "type": "chat.started",
        "request_id": str(event.request_id),
        "model_id": event.model_id,
        "model_ref": event.model_ref,
        "provider": event.provider_name,
        "locality": event.locality,
        "task_type": event.task_type,
        "complexity": event.complexity,
        "cached": event.cached,
        "decision_trace": event.decision_trace,
    }


def _progress(rid: str, step: PlanProgress) -> dict[str, Any]:
    return {
        "type": "chat.progress",
        "request_id": rid,
        "stage": step.stage,
        "parts_done": step.parts_done,
        "parts": step.parts,
    }


def _fallback(rid: str, event: Fallback) -> dict[str, Any]:
    return {
        "type": "chat.fallback",
        "request_id": rid,
        "from_model": event.from_model,
        "to_model": event.to_model,
        "error_code": event.error_code,
        "message": event.message,
    }
