"""Typed values that cross the adapter boundary. Frozen: adapters never mutate what they get."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]


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
class Message:
    """One turn. `images` belong to the turn and go to the provider before its text (the order
    the providers recommend); only models marked as accepting images are given them."""

    role: Role
    content: str
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    usage: Usage | None
    finish_reason: str | None


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
