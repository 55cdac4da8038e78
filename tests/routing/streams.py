"""OpenAI Chat Completions SSE streams built to the documented chunk format (the same shape as
tests/fixtures/openai/chat_stream.sse), for tests that need their own text."""

from __future__ import annotations

import json


def openai_sse(
    pieces: list[str],
    *,
    usage: tuple[int, int] | None = (12, 3),
    done: bool = True,
    model: str = "gpt-test",
) -> bytes:
    def chunk(delta: dict[str, str], finish: str | None) -> dict[str, object]:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    events: list[dict[str, object]] = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": piece}, None) for piece in pieces]
    events.append(chunk({}, "stop"))
    if usage is not None:
        events.append(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": 1741569952,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": usage[0] + usage[1],
                },
            }
        )
    raw = b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)
    return raw + (b"data: [DONE]\n\n" if done else b"")


def unreadable_call_stream() -> bytes:
    """An OpenAI-compatible stream whose one call's arguments are no JSON object."""

    def event(delta: dict[str, object], finish: str | None) -> bytes:
        chunk = {
            "id": "chatcmpl-bad",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    call = {
        "index": 0,
        "id": "call_bad",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "Paris"},
    }
    return (
        event({"role": "assistant", "content": None, "tool_calls": [call]}, None)
        + event({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
