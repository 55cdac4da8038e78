"""Typed values that cross the adapter boundary. Frozen: adapters never mutate what they get."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


# An image inside a message counts as this many prompt tokens when a request is planned (the
# context window, the budget hold, the token rate limit) before the provider reports its own
# count. The providers' own costs for one image run from about 85 to about 1,600 tokens by size;
# the plan takes the top of that range so a hold is never short.
IMAGE_TOKENS_ESTIMATE = 1600
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass(frozen=True)
class Image:
    """An image sent inline: its media type and its bytes in base64. Images are never fetched
    from a URL by the gateway."""

    media_type: str
    data: str

    @property
    def data_url(self) -> str:
        """The image as a `data:` URL (what OpenAI-compatible servers read)."""
        return f"data:{self.media_type};base64,{self.data}"


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for: its id (what the `tool` turn answering it names),
    the function's name and its arguments as the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call, in OpenAI's shape: the first piece of call `index`
    carries its id and name, the later ones only more of its arguments' text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does and its parameters' JSON Schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class ToolChoice:
    """Whether the model may call tools: `auto` (it decides), `none`, `required` (some tool),
    or `function` (the tool `name`)."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """The answer's form: `json_object` (any JSON object) or `json_schema` (JSON that matches
    `schema`, named `name`)."""

    type: Literal["json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class Message:
    """One turn. `images` belong to the turn and go to the provider before its text (the order
    the providers recommend); only models marked as accepting images are given them. An
    assistant turn may carry the `tool_calls` it made; a `tool` turn is the result of the call
    `tool_call_id`."""

    role: Role
    content: str
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens as billed. `input` counts only the *uncached* prompt tokens and `cached` the
    prompt tokens read from the provider's cache, so no token is counted twice; adapters
    subtract where a provider reports cached tokens inside its prompt total."""

    input: int = 0
    output: int = 0
    cached: int = 0


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed answer. The last chunk of a stream carries `finish_reason`;
    `usage` arrives on whichever chunk the provider sends it with (often the last)."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()


# A Gemini thinking model signs the function calls it makes (`thoughtSignature`, opaque) and
# refuses a later turn whose history leaves a call's signature out (Gemini 3: HTTP 400). The
# signature rides inside the call's id, which every door hands its client and every client
# hands back with the call's result, whatever protocol it speaks: `<id>__thought__<the
# signature, URL-safe base64 of its text>` (only letters, digits, `_` and `-`, which any
# protocol's ids accept). The Gemini adapter and door read it back; every other adapter sends
# the id without it.
THOUGHT_MARK = "__thought__"


def tool_call_id_signed(call_id: str, signature: str | None) -> str:
    """`call_id` carrying `signature` (unchanged without one)."""
    if not signature:
        return call_id
    encoded = base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")
    return f"{call_id}{THOUGHT_MARK}{encoded}"


def tool_call_id_split(call_id: str) -> tuple[str, str | None]:
    """A call's own id and the thought signature its id carries (None: none, or not one this
    gateway wrote)."""
    own, mark, encoded = call_id.rpartition(THOUGHT_MARK)
    if not mark or not own:
        return call_id, None
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        signature = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return call_id, None
    return (own, signature) if signature else (call_id, None)


def tool_call_id_own(call_id: str | None) -> str | None:
    """A call's id as an upstream other than Gemini gets it: without a thought signature
    (OpenAI caps ids at 40 characters; Anthropic's must match `[a-zA-Z0-9_-]+`)."""
    return None if call_id is None else tool_call_id_split(call_id)[0]


def json_text(value: Any) -> str:
    """Compact JSON text with non-ASCII characters kept: how a call's arguments given as an
    object (Anthropic's `input`, Gemini's `args`, Ollama's `arguments`) become the JSON text a
    `ToolCall` carries."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def tool_arguments_object(call: ToolCall) -> dict[str, Any] | None:
    """A call's arguments (the JSON text the model wrote) as an object: `{}` when there are
    none, None when they are not a JSON object (what a protocol that carries them as an object,
    Anthropic's `input`, Gemini's `args`, Ollama's `arguments`, cannot hold)."""
    text = call.arguments.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def tool_calls_join(deltas: Iterable[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """The whole calls that streamed pieces make, in the order of their index."""
    calls: dict[int, list[str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, ["", "", ""])
        if delta.id:
            call[0] = delta.id
        if delta.name:
            call[1] = delta.name
        call[2] += delta.arguments
    return tuple(ToolCall(id=i, name=n, arguments=a) for _, (i, n, a) in sorted(calls.items()))


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one provider. `api_key` is resolved by the caller; adapters
    never log it or put it in an error message."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0


class ProviderError(Exception):
    """An upstream failure, with the upstream's own message and status when it gave one."""

    retryable: bool = False
    code: str = "MODEL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    """Worth retrying or falling back: timeouts, 429, 5xx, connection errors, cut streams."""

    retryable = True
    code = "MODEL_UNAVAILABLE"


class ProviderTimeout(ProviderUnavailable):
    code = "TIMEOUT"


class ProviderRateLimited(ProviderUnavailable):
    code = "RATE_LIMIT_EXCEEDED"


class ProviderRejected(ProviderError):
    """Not worth retrying the same request here: 400, 401, 403, 404."""

    code = "MODEL_ERROR"


class FeatureUnsupported(ProviderRejected):
    """The request asks for something this provider's protocol, as the gateway speaks it, does
    not carry (tools, a JSON answer): refused rather than dropped. Another model may take it."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, status=400)
        self.code = code


class ProviderAuthFailed(ProviderRejected):
    code = "AUTHENTICATION_FAILED"


class ContextTooLong(ProviderRejected):
    code = "TOKEN_LIMIT_EXCEEDED"


class InvalidResponse(ProviderUnavailable):
    """The upstream answered something that is not its protocol (malformed JSON, missing
    terminator). Retryable: another attempt or model may answer properly."""

    code = "INVALID_RESPONSE"


class Adapter(Protocol):
    # A plain `def`: implementations are async generators, which a caller iterates with
    # `async for` directly; an `async def` here would type them as coroutines.
    def stream(self, endpoint: Endpoint, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Yield chunks as they arrive; raise a `ProviderError` on any failure, including a
        stream that ends without the protocol's terminator. The last chunk carries
        `finish_reason` (normalised: stop, length, content_filter, tool_calls, or the
        provider's own word lowercased) and the usage, or `usage=None` when the provider
        reported none."""
        ...

    async def complete(self, endpoint: Endpoint, request: ChatRequest) -> ChatResult: ...

    async def list_models(self, endpoint: Endpoint) -> list[str]:
        """The model ids the provider offers (cheap; also the health probe)."""
        ...
