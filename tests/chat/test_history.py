from __future__ import annotations

from chat.history import MESSAGE_OVERHEAD_TOKENS, history_trim, message_tokens
from providers.adapters.types import Message


def _m(role: str, words: int) -> Message:
    return Message(role=role, content=" ".join(["word"] * words))  # type: ignore[arg-type]


def test_everything_fits_nothing_dropped() -> None:
    messages = (_m("system", 2), _m("user", 3), _m("assistant", 3), _m("user", 1))

    trimmed = history_trim(messages, budget_tokens=1000)

    assert trimmed.messages == messages
    assert trimmed.dropped == 0
    assert trimmed.prompt_tokens == (2 + 3 + 3 + 1) + 4 * MESSAGE_OVERHEAD_TOKENS


def test_oldest_turns_go_first_and_the_system_prompt_stays() -> None:
    system, old_q, old_a, new_q = (
        _m("system", 5),
        _m("user", 50),
        _m("assistant", 50),
        _m("user", 5),
    )
    budget = message_tokens(system) + message_tokens(old_a) + message_tokens(new_q)

    trimmed = history_trim((system, old_q, old_a, new_q), budget_tokens=budget)

    # old_a alone would fit, but a history never opens with an answer: it goes too.
    assert trimmed.messages == (system, new_q)
    assert trimmed.dropped == 2
    assert trimmed.prompt_tokens == message_tokens(system) + message_tokens(new_q)


def test_keeps_whole_turns_that_fit() -> None:
    turns = (
        _m("user", 10),
        _m("assistant", 10),
        _m("user", 10),
        _m("assistant", 10),
        _m("user", 2),
    )
    budget = sum(message_tokens(m) for m in turns[2:])

    trimmed = history_trim(turns, budget_tokens=budget)

    assert trimmed.messages == turns[2:]
    assert trimmed.dropped == 2


def test_the_question_is_kept_even_when_it_alone_is_too_long() -> None:
    question = _m("user", 500)

    trimmed = history_trim((_m("user", 1), _m("assistant", 1), question), budget_tokens=10)

    assert trimmed.messages == (question,)
    assert trimmed.dropped == 2
