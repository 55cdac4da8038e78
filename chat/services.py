"""Every write of the chat. Each takes the owner's id and finds nothing outside their rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from analytics.services import feedback_record
from chat.history import history_trim
from chat.models import DEFAULT_TITLE, Conversation, Message
from chat.selectors import (
    context_budget,
    conversation_owned,
    message_owned,
    messages_for_history,
)
from providers.adapters.types import Message as PromptMessage
from providers.models import LLMModel

TITLE_MAX_CHARS = 60


@dataclass(frozen=True)
class CompareChoice:
    """One side of a comparison: a model, a policy or "auto", at an optional temperature, so
    one model can be compared with itself at two temperatures."""

    model: str
    temperature: float | None = None


@dataclass(frozen=True)
class TurnSlot:
    request_id: uuid.UUID
    model: str
    # The room kept for the answer when one model is known, so prompt and answer fit together.
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class TurnPlan:
    """A user turn saved and its prompt ready: one slot, or one per compared model."""

    conversation_id: int
    title: str
    created: bool
    user_message_id: int
    messages: tuple[PromptMessage, ...]
    slots: tuple[TurnSlot, ...]
    compare_group: uuid.UUID | None
    sticky_model_id: int | None
    dropped_messages: int
    budget_tokens: int | None


@dataclass(frozen=True)
class AnswerSaved:
    message_id: int
    switched_from: str | None = None
    switched_to: str | None = None
    switch_reason: str = ""


def conversation_create(
    *, owner_id: int, title: str = "", model_choice: str = "auto"
) -> Conversation:
    return Conversation.objects.create(
        owner_id=owner_id, title=title.strip()[:200] or DEFAULT_TITLE, model_choice=model_choice
    )


def conversation_rename(*, owner_id: int, conversation_id: int, title: str) -> Conversation:
    conversation = conversation_owned(owner_id=owner_id, conversation_id=conversation_id)
    conversation.title = title.strip()[:200] or DEFAULT_TITLE
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, owner_id: int, conversation_id: int) -> None:
    conversation_owned(owner_id=owner_id, conversation_id=conversation_id).delete()


def turn_begin(
    *,
    owner_id: int,
    conversation_id: int | None,
    content: str,
    model_choice: str,
    compare_models: tuple[CompareChoice, ...] = (),
) -> TurnPlan:
    """Save the user's message and build the prompt: the conversation's system prompt, then
    as many of the latest turns as the model's window takes."""
    with transaction.atomic():
        created = conversation_id is None
        if conversation_id is None:
            conversation = conversation_create(
                owner_id=owner_id, title=_title_from(content), model_choice=model_choice
            )
        else:
            conversation = conversation_owned(owner_id=owner_id, conversation_id=conversation_id)
            if conversation.title == DEFAULT_TITLE and not conversation.messages.exists():
                conversation.title = _title_from(content)
            if not compare_models:
                conversation.model_choice = model_choice
            conversation.save(update_fields=["title", "model_choice", "updated_at"])
        user_message = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, content=content
        )
        history = tuple(
            PromptMessage(
                role="user" if m.role == Message.Role.USER else "assistant", content=m.content
            )
            for m in messages_for_history(conversation_id=conversation.id)
        )
    system = (
        (PromptMessage(role="system", content=conversation.system_prompt),)
        if conversation.system_prompt
        else ()
    )
    choices = compare_models or (CompareChoice(model_choice),)
    budgets = [
        context_budget(model_choice=choice.model, sticky_model_id=conversation.sticky_model_id)
        for choice in choices
    ]
    known = [b for b in budgets if b is not None]
    prompt_budget = min((b.prompt_tokens for b in known), default=None)
    messages = system + history
    dropped = 0
    if prompt_budget is not None:
        trimmed = history_trim(messages, budget_tokens=prompt_budget)
        messages, dropped = trimmed.messages, trimmed.dropped
    return TurnPlan(
        conversation_id=conversation.id,
        title=conversation.title,
        created=created,
        user_message_id=user_message.id,
        messages=messages,
        slots=tuple(
            TurnSlot(
                request_id=uuid.uuid4(),
                model=choice.model,
                max_tokens=budget.answer_tokens if budget else None,
                temperature=choice.temperature,
            )
            for choice, budget in zip(choices, budgets, strict=True)
        ),
        compare_group=uuid.uuid4() if compare_models else None,
        # Compared answers are overrides: they neither follow nor move the sticky model.
        sticky_model_id=None if compare_models else conversation.sticky_model_id,
        dropped_messages=dropped,
        budget_tokens=prompt_budget,
    )


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return (line[: TITLE_MAX_CHARS - 1] + "…") if len(line) > TITLE_MAX_CHARS else line


def answer_record(
    *,
    conversation_id: int,
    request_id: uuid.UUID,
    content: str,
    status: str,
    model_ref: str = "",
    badge: dict[str, Any] | None = None,
    compare_group: uuid.UUID | None = None,
    model_id: int | None = None,
) -> AnswerSaved:
    """Save an answer (complete, partial or failed). A complete answer outside a comparison
    makes its model the conversation's sticky model; a change of model is written into the
    thread as a notice, with the gateway's reason."""
    badge = badge or {}
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(id=conversation_id)
        previous_id = conversation.sticky_model_id
        switch = AnswerSaved(message_id=0)
        if compare_group is None and model_id is not None and model_id != previous_id:
            if previous_id is not None:
                switch = _switch_notice(conversation, previous_id, model_ref, badge)
            conversation.sticky_model_id = model_id
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=content,
            status=status,
            request_id=request_id,
            model_ref=model_ref,
            compare_group=compare_group,
            badge=badge,
        )
        conversation.save(update_fields=["sticky_model", "updated_at"])
    return AnswerSaved(message.id, switch.switched_from, switch.switched_to, switch.switch_reason)


def _switch_notice(
    conversation: Conversation, previous_id: int, model_ref: str, badge: dict[str, Any]
) -> AnswerSaved:
    previous = LLMModel.objects.filter(id=previous_id).select_related("provider").first()
    previous_ref = str(previous) if previous else f"model #{previous_id}"
    sticky = (badge.get("decision_trace") or {}).get("sticky") or {}
    reason = str(sticky.get("reason") or "the gateway chose another model")
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.NOTICE,
        content=f"Switched from {previous_ref} to {model_ref}: {reason}",
    )
    return AnswerSaved(0, previous_ref, model_ref, reason)


def feedback_give(*, owner_id: int, message_id: int, positive: bool) -> None:
    """Thumbs on an answer, stored against its request log row (a quality signal)."""
    message = message_owned(owner_id=owner_id, message_id=message_id)
    if message.role != Message.Role.ASSISTANT or message.request_id is None:
        raise Message.DoesNotExist("only answers with a request take feedback")
    feedback_record(request_id=message.request_id, positive=positive)


class NotACompareAnswer(ValueError):
    """The message is not an answer of a comparison, so there is nothing to prefer it over."""


class AnswerNotRecorded(LookupError):
    """The answer has no request yet, so no vote can be stored against it."""


@dataclass(frozen=True)
class CompareVote:
    message_id: int
    request_id: uuid.UUID
    positive: bool


def compare_choose(*, owner_id: int, message_id: int) -> tuple[CompareVote, ...]:
    """Prefer one answer of a comparison: thumbs up on its request, thumbs down on every other
    answer of the group that has a request. Choosing again moves the votes. Raises
    `Message.DoesNotExist` (not the owner's), `NotACompareAnswer`, `AnswerNotRecorded`, and
    `RequestLog.DoesNotExist` when a request's log row has not appeared yet (nothing is then
    written)."""
    with transaction.atomic():
        chosen = message_owned(owner_id=owner_id, message_id=message_id)
        if chosen.role != Message.Role.ASSISTANT or chosen.compare_group is None:
            raise NotACompareAnswer("only an answer of a comparison can be preferred")
        if chosen.request_id is None:
            raise AnswerNotRecorded("this answer has no request yet; try again when it is done")
        # Locked in id order, so two choices in one group land one after the other, never mixed.
        group = list(
            Message.objects.select_for_update()
            .filter(
                conversation_id=chosen.conversation_id,
                compare_group=chosen.compare_group,
                role=Message.Role.ASSISTANT,
                request_id__isnull=False,
            )
            .order_by("id")
        )
        votes = []
        for answer in group:
            assert answer.request_id is not None  # filtered above; narrows the type
            positive = answer.id == chosen.id
            feedback_record(request_id=answer.request_id, positive=positive)
            votes.append(CompareVote(answer.id, answer.request_id, positive))
    return tuple(votes)
