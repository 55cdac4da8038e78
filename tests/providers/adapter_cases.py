"""One description per wire protocol, so the failure matrix runs the same checks on each."""

from __future__ import annotations

import json
from dataclasses import dataclass

from providers.adapters.anthropic_messages import AnthropicMessagesAdapter
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.openai_chat import OpenAIChatAdapter
from providers.adapters.types import Adapter, ChatChunk, ChatRequest, Endpoint, Message
from tests.providers.upstream_server import Reply, UpstreamServer, fixture

API_KEY = "sk-test-0123456789abcdefwxyz"
ANSWER_PIECES = {
    "openai": ["The", " capital", " of", " France", " is", " Paris", "."],
    "anthropic": ["The capital", " of France", " is Paris."],
    "gemini": ["The capital", " of France", " is Paris."],
    "ollama": ["The", " capital", " of", " France", " is", " Paris", "."],
}


@dataclass(frozen=True)
class Case:
    kind: str
    adapter: Adapter
    model: str
    base_path: str
    stream_path: str
    complete_path: str
    models_path: str
    stream_file: str
    # The stream's last frame (its terminator) and a frame whose JSON is cut short.
    terminator: bytes
    malformed_frame: bytes
    error_401: bytes
    error_429: bytes
    error_500: bytes
    content_type: str = "text/event-stream"

    def stream_body(self) -> bytes:
        return fixture(self.stream_file)

    def stream_reply(self, raw: bytes | None = None) -> Reply:
        raw = self.stream_body() if raw is None else raw
        if self.content_type == "application/x-ndjson":
            return Reply.ndjson(raw)
        return Reply.sse(raw)

    def endpoint(self, upstream: UpstreamServer, **timeouts: float) -> Endpoint:
        return Endpoint(base_url=upstream.url + self.base_path, api_key=API_KEY, **timeouts)

    def request(self) -> ChatRequest:
        return ChatRequest(
            model=self.model,
            messages=(
                Message(role="system", content="Answer in one sentence."),
                Message(role="user", content="What is the capital of France?"),
            ),
            max_tokens=64,
        )


CASES = (
    Case(
        kind="openai",
        adapter=OpenAIChatAdapter(),
        model="gpt-4o-mini",
        base_path="/v1",
        stream_path="/v1/chat/completions",
        complete_path="/v1/chat/completions",
        models_path="/v1/models",
        stream_file="openai/chat_stream.sse",
        terminator=b"data: [DONE]\n\n",
        malformed_frame=b'data: {"id":"chatcmpl-x","choices":[{"index":0,"delta":{"content"\n\n',
        error_401=fixture("openai/error_401.json"),
        error_429=fixture("openai/error_429.json"),
        error_500=fixture("openai/error_500.json"),
    ),
    Case(
        kind="anthropic",
        adapter=AnthropicMessagesAdapter(),
        model="claude-sonnet-4-20250514",
        base_path="",
        stream_path="/v1/messages",
        complete_path="/v1/messages",
        models_path="/v1/models",
        stream_file="anthropic/messages_stream.sse",
        terminator=b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        malformed_frame=(
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta"\n\n'
        ),
        error_401=fixture("anthropic/error_401.json"),
        error_429=fixture("anthropic/error_429.json"),
        error_500=fixture("anthropic/error_500.json"),
    ),
    Case(
        kind="gemini",
        adapter=GeminiAdapter(),
        model="gemini-2.5-flash",
        base_path="",
        stream_path="/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        complete_path="/v1beta/models/gemini-2.5-flash:generateContent",
        models_path="/v1beta/models",
        stream_file="gemini/stream.sse",
        # Gemini has no sentinel: the frame with finishReason is the terminator.
        terminator=fixture("gemini/stream.sse").split(b"\r\n\r\n")[-2] + b"\r\n\r\n",
        malformed_frame=b'data: {"candidates":[{"content":{"parts":[{"text":"x"\r\n\r\n',
        error_401=(
            b'{"error": {"code": 401, "message": "Request had invalid authentication '
            b'credentials.", "status": "UNAUTHENTICATED"}}'
        ),
        error_429=fixture("gemini/error_429.json"),
        error_500=fixture("gemini/error_500.json"),
    ),
    Case(
        kind="ollama",
        adapter=OllamaAdapter(),
        model="llama3.2",
        base_path="",
        stream_path="/api/chat",
        complete_path="/api/chat",
        models_path="/api/tags",
        stream_file="ollama/chat_stream.ndjson",
        terminator=fixture("ollama/chat_stream.ndjson").splitlines(keepends=True)[-1],
        malformed_frame=b'{"model":"llama3.2","message":{"role":"assistant","content":"x"\n',
        # Ollama has no auth or rate limits of its own; these are a proxy's answers in
        # Ollama's error shape.
        error_401=b'{"error":"unauthorized"}',
        error_429=b'{"error":"rate limit exceeded"}',
        error_500=fixture("ollama/error_500.json"),
        content_type="application/x-ndjson",
    ),
)


def upstream_message(body: bytes) -> str:
    """The message each protocol's error body carries, read the way a person would."""
    payload = json.loads(body)
    error = payload["error"]
    return error if isinstance(error, str) else error["message"]


async def collect(adapter: Adapter, endpoint: Endpoint, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in adapter.stream(endpoint, request)]
