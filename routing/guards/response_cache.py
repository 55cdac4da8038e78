"""Exact response cache: a request sent to the same provider and model, with the same
parameters, system prompt, messages (and every other field of the upstream request) gets the
stored answer back, with its usage, at no cost.

Which answers may be kept is the routing policy's choice (`cache_refusal`): by default only
deterministic requests (`temperature` 0), `always` any request, `off` none. A caller opts a
request out with `Cache-Control: no-cache` or `no-store` (`cache_control_opts_out`) or a
`"cache": false` body field.

Size is bounded by construction: an entry larger than RESPONSE_CACHE_MAX_ENTRY_BYTES is not
stored, and entries live in RESPONSE_CACHE_SLOTS fixed slots (the key's hash picks the slot, a
newer answer replaces an older one in the same slot). The cache can therefore never hold more
than slots * max entry bytes, whatever Redis's own eviction policy is; that matters because the
same Redis carries the Celery broker, which must never be evicted. The fixed slots are also
what makes a purge by provider or model possible without an index: it reads every slot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from django.core.cache import BaseCache, cache

from providers.adapters.types import ChatRequest, Usage
from routing.guards import conf

CACHE_DETERMINISTIC = "deterministic"
CACHE_ALWAYS = "always"
CACHE_OFF = "off"
CACHE_MODES = (CACHE_DETERMINISTIC, CACHE_ALWAYS, CACHE_OFF)

# Slots read per round trip by a purge.
PURGE_BATCH = 512


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    usage: Usage
    provider: str
    model: str
    cached_at: float
    key: str


_ADDED_LATER = frozenset(
    {
        "images",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "tool_calls",
        "tool_call_id",
    }
)


def _fields_of(value: Any) -> Any:
    # Every field of a dataclass, so a field added to ChatRequest or Message (tools, a
    # response format) is part of the key without anyone remembering to add it here.
    # Fields added since keys were first stored are left out while empty, so that adding one
    # does not change the key of every request that does not use it.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: field_value
            for f in dataclasses.fields(value)
            if (field_value := getattr(value, f.name)) not in ((), None)
            or f.name not in _ADDED_LATER
        }
    raise TypeError(f"{type(value).__name__} has no canonical form")


def response_cache_key(request: ChatRequest, *, provider: str) -> str:
    """SHA-256 of the provider and of every field of the upstream request, in a canonical
    JSON form."""
    canonical = json.dumps(
        {"provider": provider, "request": request},
        default=_fields_of,
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_refusal(request: ChatRequest, *, mode: str) -> str | None:
    """Why the answer to `request` may not be cached under the policy's `mode`, or None.

    Deterministic means `temperature` 0: without one the provider's default applies, which
    samples (1 for OpenAI and most others), so two answers may rightly differ."""
    if mode == CACHE_OFF:
        return "policy_off"
    if mode == CACHE_ALWAYS or request.temperature == 0:
        return None
    return "not_deterministic"


def cache_control_opts_out(header: str | None) -> bool:
    """Whether a request's `Cache-Control` header has `no-cache` or `no-store`."""
    if not header:
        return False
    directives = {part.split("=", 1)[0].strip().lower() for part in header.split(",")}
    return "no-cache" in directives or "no-store" in directives


class ResponseCache:
    def __init__(self, store: BaseCache | None = None) -> None:
        self.store = store if store is not None else cache

    def lookup(self, key: str) -> CachedAnswer | None:
        if not conf.response_cache_enabled():
            return None
        return answer_of(self.store.get(slot_key(key)), key)

    def save(self, key: str, *, provider: str, model: str, text: str, usage: Usage) -> bool:
        """Keep a finished answer; False when disabled or over the entry size."""
        if not conf.response_cache_enabled():
            return False
        if len(text.encode()) > conf.response_cache_max_entry_bytes():
            return False
        entry = {
            "d": key,
            "t": text,
            "u": [usage.input, usage.output, usage.cached],
            "p": provider,
            "m": model,
            "at": time.time(),
        }
        self.store.set(slot_key(key), entry, timeout=conf.response_cache_ttl_s())
        return True

    def purge(
        self, *, provider: str | None = None, model: str | None = None, key: str | None = None
    ) -> int:
        """Drop the answers matching every filter given (at least one); the number dropped.

        `model` is the provider's own model name (of any provider unless `provider` is given).
        An answer stored while the purge runs, by a request still in flight, may survive it."""
        if provider is None and model is None and key is None:
            raise ValueError("purge needs a provider, a model or a key")
        slots = [slot_key(key)] if key is not None else self._all_slots()
        return self._purge(
            slots,
            lambda entry: (
                (key is None or entry.get("d") == key)
                and (provider is None or entry.get("p") == provider)
                and (model is None or entry.get("m") == model)
            ),
        )

    def purge_models(self, targets: Collection[tuple[str, str | None]]) -> int:
        """Drop the answers of any of `targets`: `(provider, model)`, or `(provider, None)` for
        every model of the provider; in one pass over the slots."""
        providers = {provider for provider, model in targets if model is None}
        models = {target for target in targets if target[1] is not None}
        if not targets:
            return 0
        return self._purge(
            self._all_slots(),
            lambda entry: entry.get("p") in providers or (entry.get("p"), entry.get("m")) in models,
        )

    def _all_slots(self) -> list[str]:
        return [f"response:{n}" for n in range(conf.response_cache_slots())]

    def _purge(self, slots: list[str], match: Callable[[dict[str, Any]], bool]) -> int:
        purged = 0
        for start in range(0, len(slots), PURGE_BATCH):
            entries = self.store.get_many(slots[start : start + PURGE_BATCH])
            doomed = [
                slot for slot, entry in entries.items() if isinstance(entry, dict) and match(entry)
            ]
            if doomed:
                self.store.delete_many(doomed)
                purged += len(doomed)
        return purged


def answer_of(entry: Any, key: str) -> CachedAnswer | None:
    """The stored answer for `key`, if the slot holds it (another key may own the slot)."""
    if not entry or entry.get("d") != key:
        return None
    return CachedAnswer(
        text=entry["t"],
        usage=Usage(*entry["u"]),
        provider=entry.get("p", ""),
        model=entry["m"],
        cached_at=entry["at"],
        key=key,
    )


def slot_key(key: str) -> str:
    """The cache key of the slot that holds `key`'s answer."""
    return f"response:{int(key[:16], 16) % conf.response_cache_slots()}"
