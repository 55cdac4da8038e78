"""Parsing of the frames a chat client sends; a bad frame raises `FrameError` with its reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from routing.validation import MODEL_MAX_CHARS, FieldInvalid, nul_check

MAX_PROMPT_CHARS = 32_000
MAX_MODEL_CHARS = MODEL_MAX_CHARS
COMPARE_MIN, COMPARE_MAX = 2, 3


class FrameError(ValueError):
    pass


@dataclass(frozen=True)
class ChatRequestFrame:
    conversation_id: int | None
    content: str
    model: str
    compare: tuple[str, ...]

    @classmethod
    def parse(cls, frame: dict[str, Any]) -> ChatRequestFrame:
        try:
            # What cannot be stored (a NUL character) is refused before it is answered.
            nul_check({k: frame.get(k) for k in ("content", "model", "compare")})
        except FieldInvalid as error:
            raise FrameError(str(error)) from error
        conversation_id = frame.get("conversation_id")
        if conversation_id is not None and (
            not isinstance(conversation_id, int) or isinstance(conversation_id, bool)
        ):
            raise FrameError("conversation_id must be an integer or null")
        content = frame.get("content")
        if not isinstance(content, str) or not content.strip():
            raise FrameError("content must be a non-empty string")
        if len(content) > MAX_PROMPT_CHARS:
            raise FrameError(f"content is limited to {MAX_PROMPT_CHARS} characters")
        model = frame.get("model") or "auto"
        if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS:
            raise FrameError(f"model must be a string of at most {MAX_MODEL_CHARS} characters")
        compare = frame.get("compare") or []
        if not isinstance(compare, list) or not all(
            isinstance(m, str) and 0 < len(m) <= MAX_MODEL_CHARS for m in compare
        ):
            raise FrameError('compare must be a list of "provider:model" strings')
        if compare and not COMPARE_MIN <= len(set(compare)) == len(compare) <= COMPARE_MAX:
            raise FrameError(f"compare takes {COMPARE_MIN} to {COMPARE_MAX} different models")
        return cls(conversation_id, content, model, tuple(compare))


def cancel_target(frame: dict[str, Any]) -> uuid.UUID | None:
    """The request a `chat.cancel` names, or None for every running request."""
    raw = frame.get("request_id")
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError as error:
        raise FrameError("request_id must be a UUID") from error
