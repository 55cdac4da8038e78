"""Parsing of the frames a chat client sends; a bad frame raises `FrameError` with its reason."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from chat.services import CompareChoice
from routing.request_metadata import NO_METADATA, RequestMetadata, metadata_read
from routing.validation import MODEL_MAX_CHARS, FieldInvalid, nul_check

MAX_PROMPT_CHARS = 32_000
MAX_MODEL_CHARS = MODEL_MAX_CHARS
COMPARE_MIN, COMPARE_MAX = 2, 3
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.0, 2.0


class FrameError(ValueError):
    pass


@dataclass(frozen=True)
class ChatRequestFrame:
    conversation_id: int | None
    content: str
    model: str
    compare: tuple[CompareChoice, ...]
    cache: bool = True
    """False: the answer is neither served from nor kept in the response cache."""
    metadata: RequestMetadata = field(default=NO_METADATA)
    """The frame's optional `project_id` and `tags`; the signed-in user is the end user."""

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
        raw_compare = frame.get("compare") or []
        if not isinstance(raw_compare, list):
            raise FrameError(COMPARE_SHAPE)
        compare = tuple(_compare_choice(item) for item in raw_compare)
        if compare and not COMPARE_MIN <= len(set(compare)) == len(compare) <= COMPARE_MAX:
            raise FrameError(f"compare takes {COMPARE_MIN} to {COMPARE_MAX} different models")
        cache = frame.get("cache", True)
        if not isinstance(cache, bool):
            raise FrameError("cache must be a boolean")
        try:
            metadata = metadata_read(body=frame, path="", keys=("project_id", "tags", "local_only"))
        except FieldInvalid as error:
            raise FrameError(str(error)) from error
        return cls(conversation_id, content, model, compare, cache, metadata)


COMPARE_SHAPE = (
    'compare must be a list of models ("provider:model" or a policy name) or of '
    '{"model": ..., "temperature": ...} objects'
)


def _compare_choice(item: Any) -> CompareChoice:
    """A compared model, policy or "auto": a string, or an object with a temperature."""
    if isinstance(item, dict):
        model, temperature = item.get("model"), item.get("temperature")
    else:
        model, temperature = item, None
    if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_CHARS:
        raise FrameError(COMPARE_SHAPE)
    if temperature is None:
        return CompareChoice(model)
    if (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX
    ):
        raise FrameError(
            f"a compared temperature is a number from {TEMPERATURE_MIN} to {TEMPERATURE_MAX}"
        )
    return CompareChoice(model, float(temperature))


def cancel_target(frame: dict[str, Any]) -> uuid.UUID | None:
    """The request a `chat.cancel` names, or None for every running request."""
    raw = frame.get("request_id")
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError as error:
        raise FrameError("request_id must be a UUID") from error
