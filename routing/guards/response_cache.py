"""Exact response cache: the same model, parameters, system prompt and messages get the stored
answer back, with its usage, at no cost.

Size is bounded by construction: an entry larger than RESPONSE_CACHE_MAX_ENTRY_BYTES is not
stored, and entries live in RESPONSE_CACHE_SLOTS fixed slots (the key's hash picks the slot, a
newer answer replaces an older one in the same slot). The cache can therefore never hold more
than slots * max entry bytes, whatever Redis's own eviction policy is; that matters because the
same Redis carries the Celery broker, which must never be evicted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.cache import BaseCache, cache

from providers.adapters.types import ChatRequest, Usage
from routing.guards import conf


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    usage: Usage
    model: str
    cached_at: float


def response_cache_key(request: ChatRequest) -> str:
    """SHA-256 of everything that shapes the answer, in a canonical JSON form."""
    canonical = json.dumps(
        {
            "model": request.model,
            "messages": [[m.role, m.content] for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_bypassed(metadata: Mapping[str, Any] | None) -> bool:
    """A request opts out with `"cache": false` in its metadata."""
    return metadata is not None and metadata.get("cache") is False


class ResponseCache:
    def __init__(self, store: BaseCache | None = None) -> None:
        self.store = store if store is not None else cache

    def lookup(self, request: ChatRequest, *, bypass: bool = False) -> CachedAnswer | None:
        if bypass or not conf.response_cache_enabled():
            return None
        digest = response_cache_key(request)
        return answer_of(self.store.get(slot_key(digest)), digest)

    def save(self, request: ChatRequest, *, text: str, usage: Usage, bypass: bool = False) -> bool:
        """Keep a finished answer; False when bypassed, disabled, or over the entry size."""
        if bypass or not conf.response_cache_enabled():
            return False
        if len(text.encode()) > conf.response_cache_max_entry_bytes():
            return False
        digest = response_cache_key(request)
        entry = {
            "d": digest,
            "t": text,
            "u": [usage.input, usage.output, usage.cached],
            "m": request.model,
            "at": time.time(),
        }
        self.store.set(slot_key(digest), entry, timeout=conf.response_cache_ttl_s())
        return True


def answer_of(entry: Any, digest: str) -> CachedAnswer | None:
    """The stored answer for `digest`, if the slot holds it (another key may own the slot)."""
    if not entry or entry.get("d") != digest:
        return None
    return CachedAnswer(
        text=entry["t"], usage=Usage(*entry["u"]), model=entry["m"], cached_at=entry["at"]
    )


def slot_key(digest: str) -> str:
    """The cache key of the slot that holds `digest`'s answer."""
    return f"response:{int(digest[:16], 16) % conf.response_cache_slots()}"
