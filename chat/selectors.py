"""Reads of the chat: every query is scoped to the owner, so another user's id finds nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from analytics.models import RequestFeedback
from chat.badges import badge_costs
from chat.explain import Line, decision_explain
from chat.models import Conversation, Message
from chat.render import markdown_render
from providers.models import LLMModel
from routing.models import RoutingPolicy

AUTO = "auto"
SEARCH_LIMIT = 200


@dataclass(frozen=True)
class ConversationItem:
    id: int
    title: str
    model_choice: str
    updated_at: datetime


@dataclass(frozen=True)
class MessageView:
    id: int
    role: str
    content: str
    html: str
    status: str
    request_id: str | None
    model_ref: str
    compare_group: str | None
    badge: dict[str, Any]
    feedback: bool | None
    explanation: list[Line]


@dataclass(frozen=True)
class ThreadView:
    id: int
    title: str
    model_choice: str
    sticky_model_ref: str | None
    messages: tuple[MessageView, ...]


@dataclass(frozen=True)
class ModelOption:
    value: str
    label: str
    group: str  # "auto", "policy" or "model"
    locality: str = ""


def conversation_list(*, owner_id: int, search: str = "") -> list[ConversationItem]:
    rows = Conversation.objects.filter(owner_id=owner_id)
    search = search.strip()
    if search:
        matching = Message.objects.filter(content__icontains=search).values("conversation_id")
        rows = rows.filter(Q(title__icontains=search) | Q(id__in=matching))
    return [
        ConversationItem(
            id=c.id, title=c.title, model_choice=c.model_choice, updated_at=c.updated_at
        )
        for c in rows[:SEARCH_LIMIT]
    ]


def conversation_owned(*, owner_id: int, conversation_id: int) -> Conversation:
    """Raises `Conversation.DoesNotExist` for a missing id and for another user's alike."""
    return Conversation.objects.select_related("sticky_model__provider").get(
        id=conversation_id, owner_id=owner_id
    )


def conversation_thread(*, owner_id: int, conversation_id: int) -> ThreadView:
    conversation = conversation_owned(owner_id=owner_id, conversation_id=conversation_id)
    messages = list(conversation.messages.all())
    request_ids = [m.request_id for m in messages if m.request_id is not None]
    votes: dict[Any, bool] = dict(
        RequestFeedback.objects.filter(request__request_id__in=request_ids).values_list(
            "request__request_id", "positive"
        )
    )
    return ThreadView(
        id=conversation.id,
        title=conversation.title,
        model_choice=conversation.model_choice,
        sticky_model_ref=str(conversation.sticky_model) if conversation.sticky_model else None,
        messages=tuple(_message_view(m, votes.get(m.request_id)) for m in messages),
    )


def _message_view(message: Message, feedback: bool | None) -> MessageView:
    rendered = message.role == Message.Role.ASSISTANT
    return MessageView(
        id=message.id,
        role=message.role,
        content=message.content,
        html=markdown_render(message.content) if rendered else "",
        status=message.status,
        request_id=str(message.request_id) if message.request_id else None,
        model_ref=message.model_ref,
        compare_group=str(message.compare_group) if message.compare_group else None,
        badge=badge_costs(message.badge),
        feedback=feedback,
        explanation=decision_explain(
            message.badge.get("decision_trace"),
            model_ref=message.model_ref,
            cached=bool(message.badge.get("cached")),
        ),
    )


def _enabled_models() -> list[LLMModel]:
    return list(
        LLMModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    )


def model_options() -> tuple[ModelOption, ...]:
    """What the model picker offers: Auto, each routing policy, each enabled model."""
    options = [ModelOption(value=AUTO, label="Auto (default policy)", group="auto")]
    options += [
        ModelOption(value=name, label=f"Policy: {name}", group="policy")
        for name in RoutingPolicy.objects.values_list("name", flat=True)
    ]
    options += [
        ModelOption(
            value=str(model),
            label=f"{model.label} ({model.provider.name}, {model.provider.locality})",
            group="model",
            locality=model.provider.locality,
        )
        for model in _enabled_models()
    ]
    return tuple(options)


def model_by_ref(ref: str) -> LLMModel | None:
    provider_name, sep, name = ref.partition(":")
    if not sep:
        return None
    return (
        LLMModel.objects.filter(provider__name=provider_name, name=name)
        .select_related("provider")
        .first()
    )


@dataclass(frozen=True)
class ContextBudget:
    prompt_tokens: int
    # Set only when one model is known: a policy's answer is not capped by its smallest model.
    answer_tokens: int | None


def context_budget(*, model_choice: str, sticky_model_id: int | None) -> ContextBudget | None:
    """Room for the prompt and for the answer, or None when no model is known to bound them.

    A named model bounds them by its own window. Otherwise the conversation's sticky model
    does; on a first turn under a policy the smallest enabled window does, so every
    candidate the policy may pick can still take the prompt.
    """
    model = model_by_ref(model_choice)
    if model is None and sticky_model_id is not None:
        model = LLMModel.objects.filter(id=sticky_model_id, enabled=True).first()
    if model is not None:
        return ContextBudget(prompt_tokens=_prompt_room(model), answer_tokens=_answer_room(model))
    candidates = _enabled_models()
    if not candidates:
        return None
    return ContextBudget(prompt_tokens=min(_prompt_room(m) for m in candidates), answer_tokens=None)


def _answer_room(model: LLMModel) -> int:
    return min(model.max_output_tokens, model.context_window // 4)


def _prompt_room(model: LLMModel) -> int:
    return max(1, model.context_window - _answer_room(model))


def messages_for_history(*, conversation_id: int) -> list[Message]:
    """Turns that go back to a model: the thread's own answers with text, no comparison
    answers and no notices."""
    return list(
        Message.objects.filter(
            conversation_id=conversation_id,
            role__in=(Message.Role.USER, Message.Role.ASSISTANT),
            compare_group__isnull=True,
        ).exclude(role=Message.Role.ASSISTANT, content="")
    )


def message_owned(*, owner_id: int, message_id: int) -> Message:
    return Message.objects.get(id=message_id, conversation__owner_id=owner_id)
