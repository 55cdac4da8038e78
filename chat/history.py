"""Fitting a conversation into a model's context window (pure: no ORM, no clock)."""

from __future__ import annotations

from dataclasses import dataclass

from analytics.pricing import tokens_estimate
from providers.adapters.types import Message

# Chat templates add a few tokens per message (role markers, separators).
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class TrimmedHistory:
    messages: tuple[Message, ...]
    dropped: int
    prompt_tokens: int
    budget_tokens: int


def message_tokens(message: Message) -> int:
    return tokens_estimate(message.content) + MESSAGE_OVERHEAD_TOKENS


def history_trim(messages: tuple[Message, ...], *, budget_tokens: int) -> TrimmedHistory:
    """Drop the oldest turns until the rest fits `budget_tokens`.

    System messages are always kept, and so is the last message (the question being asked):
    when even that does not fit, the request goes out whole and the gateway refuses it with
    its own error rather than the chat sending an empty prompt.
    """
    system = [m for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    used = sum(message_tokens(m) for m in system)
    kept: list[Message] = []
    for index, message in enumerate(reversed(turns)):
        cost = message_tokens(message)
        if index > 0 and used + cost > budget_tokens:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    # A reply must not open the history: a user turn always comes first after the system.
    while len(kept) > 1 and kept[0].role == "assistant":
        used -= message_tokens(kept.pop(0))
    return TrimmedHistory(
        messages=(*system, *kept),
        dropped=len(turns) - len(kept),
        prompt_tokens=used,
        budget_tokens=budget_tokens,
    )
