"""The contract of `routing.services.chat_stream`: what every entry point sends in and gets back.

Entry points (chat websocket, OpenAI-compatible SSE, native API, batch) build a `GatewayRequest`,
iterate the events, and only translate them to their wire format. Exactly one terminal event
(`Finished` or `Failed`) ends every stream, and the request log row is written for every request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from providers.adapters.types import (
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from routing.request_metadata import NO_METADATA, RequestMetadata


@dataclass(frozen=True)
class Caller:
    """Who is asking. `api_key_id` is set for API-key callers, `user_id` for logged-in users
    (and for keys that have an owner)."""

    user_id: int | None = None
    api_key_id: int | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    is_staff: bool = False
    local_only: bool = False
    """The key keeps every request on local models (`ApiKey.local_only`)."""


@dataclass(frozen=True)
class EmbeddingWanted:
    """What marks a request as an embeddings request: its texts are its messages (one user
    message per input), and it is answered with one vector per input."""

    dimensions: int | None = None


@dataclass(frozen=True)
class GatewayRequest:
    messages: tuple[Message, ...]
    entry_point: str  # analytics.models.RequestLog.EntryPoint value
    caller: Caller = field(default_factory=Caller)
    # "auto" or None: the default policy; a policy name: that policy; "provider:model" or a
    # model name: an override that bypasses routing but is still recorded and budgeted.
    model: str | None = None
    fallback_chain: tuple[str, ...] = ()
    """The caller's own models to try, in order, after `model` when it names one (else
    alone): `provider:model` or model names, checked against the registry."""
    task_type: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    session_id: str = ""
    conversation_id: int | None = None
    sticky_model_id: int | None = None
    use_cache: bool = True
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    metadata: RequestMetadata = NO_METADATA
    """The caller's end user, project and tags (routing/request_metadata.py), kept on the log."""
    parent_request_id: uuid.UUID | None = None
    """The plan by parts this request is one part (or reduce step) of (routing/plans): its log
    row links to the plan's, and the plan's budget hold covers it (it takes none of its own)."""
    buffered: bool = False
    """The client gets the answer whole (a non-streamed completion, the native API, a batch
    item): nothing is shown before the end, so a failure mid-answer can still fall back."""
    tools: tuple[Tool, ...] = ()
    """Functions the model may call: only models marked `accepts_tools` are routed to."""
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    tool_arguments_objects: bool = False
    """The door answers a tool call's arguments as an object (Anthropic, Gemini): a call whose
    arguments are no JSON object is the model's invalid answer (execution.ChainContext)."""
    response_format: ResponseFormat | None = None
    """A JSON answer: only models marked `accepts_json_output` are routed to."""
    embedding: EmbeddingWanted | None = None
    """Set for an embeddings request: routed to embedding models only, answered with vectors."""

    @property
    def uses_tools(self) -> bool:
        """The request offers tools, or its conversation holds tool calls or their results."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)


@dataclass(frozen=True)
class RateLimitInfo:
    limit_requests: int | None
    remaining_requests: int | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_s: float
    retry_after_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "limit_requests": self.limit_requests,
            "remaining_requests": self.remaining_requests,
            "limit_tokens": self.limit_tokens,
            "remaining_tokens": self.remaining_tokens,
            "reset_s": self.reset_s,
        }


@dataclass(frozen=True)
class Started:
    """A model was chosen and the first attempt is under way (or the answer came from cache)."""

    request_id: uuid.UUID
    model_id: int
    model_ref: str  # "provider:model"
    provider_name: str
    locality: str
    task_type: str
    complexity: str
    decision_trace: dict[str, Any]
    cached: bool = False
    rate_limit: RateLimitInfo | None = None
    """The caller's rate-limit figures after this request was admitted (streamed answers send
    their headers before the end)."""


@dataclass(frozen=True)
class Delta:
    text: str
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True)
class Fallback:
    """The previous model failed before its first token; the next one in the chain takes over."""

    from_model: str
    to_model: str
    error_code: str
    message: str


@dataclass(frozen=True)
class Finished:
    request_id: uuid.UUID
    model_id: int
    model_ref: str
    provider_name: str
    locality: str
    text: str
    finish_reason: str | None
    usage: Usage
    cost_usd: Decimal | None
    cost_state: str  # RequestLog.CostState value
    baseline_cost_usd: Decimal | None
    latency_ms: int
    time_to_first_token_ms: int | None
    attempts: int
    fallbacks: int
    cached: bool
    decision_trace: dict[str, Any]
    rate_limit: RateLimitInfo | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    embeddings: tuple[tuple[float, ...], ...] = ()
    """An embeddings request's vectors, one per input in order."""


@dataclass(frozen=True)
class Failed:
    """The request ended without a complete answer. `partial` is true when some text was
    already streamed (the failure came after the first token)."""

    request_id: uuid.UUID
    code: str  # one of ERROR_STATUS below
    message: str
    partial: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    rate_limit: RateLimitInfo | None = None
    retry_after_s: float | None = None

    @property
    def http_status(self) -> int:
        return ERROR_STATUS.get(self.code, 500)


Event = Started | Delta | Fallback | Finished | Failed

# The one table of error codes and their HTTP status, shared by every entry point.
ERROR_STATUS: dict[str, int] = {
    "INVALID_REQUEST": 400,
    "TOKEN_LIMIT_EXCEEDED": 400,
    "PRIVACY_NO_LOCAL_MODEL": 400,
    "IMAGES_NOT_SUPPORTED": 400,
    "TOOLS_NOT_SUPPORTED": 400,
    "JSON_OUTPUT_NOT_SUPPORTED": 400,
    "AUTHENTICATION_FAILED": 401,
    "BUDGET_EXCEEDED": 402,
    "PLAN_EXCEEDS_BUDGET": 402,
    "PLAN_EXCEEDS_RATE_LIMIT": 429,
    "AGENT_BLOCKED": 403,
    "MODEL_UNAVAILABLE": 503,
    "SERVICE_UNAVAILABLE": 503,
    "DEPENDENCY_UNAVAILABLE": 503,
    "RATE_LIMIT_EXCEEDED": 429,
    "MODEL_ERROR": 502,
    "INVALID_RESPONSE": 502,
    "TIMEOUT": 504,
    "CANCELLED": 499,
}
