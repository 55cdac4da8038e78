"""What the engine hands to `analytics.services.request_record` once a request is finished."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class RequestOutcome:
    """Everything the request log keeps about one request, success or failure.

    `cost_usd` is None when the price is unknown or no model was called; `cost_state` says which.
    `baseline_cost_usd` is the same tokens at the baseline model's prices, fixed at write time.
    `model_tier` is the tier of the model that answered (or failed last); with the learned
    router's probability in `decision_trace["router"]` it gives the request's quality loss.
    """

    created_at: datetime
    entry_point: str
    status: str
    cost_state: str
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    user_id: int | None = None
    api_key_id: int | None = None
    conversation_id: int | None = None
    session_id: str = ""
    end_user: str = ""
    project: str = ""
    tags: tuple[str, ...] = ()
    task_type: str = ""
    complexity: str = ""
    requested_model: str = ""
    model_id: int | None = None
    model_name: str = ""
    provider_name: str = ""
    locality: str = ""
    model_tier: str = ""
    error_code: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal | None = None
    baseline_cost_usd: Decimal | None = None
    latency_ms: int = 0
    time_to_first_token_ms: int | None = None
    attempts: int = 0
    fallbacks: int = 0
    cache_hit: bool = False
    decision_trace: dict[str, Any] = field(default_factory=dict)
    parent_id: uuid.UUID | None = None
    """The request id of the plan by parts this request was one part of."""
    prompt_text: str | None = None
    response_text: str | None = None
