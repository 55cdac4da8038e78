"""Which adapter speaks each provider kind. Adding a kind is one module and one row here."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import cast

from providers.adapters.types import Adapter

ADAPTERS: dict[str, str] = {
    "openai": "providers.adapters.openai_chat.OpenAIChatAdapter",
    "openai_compatible": "providers.adapters.openai_chat.OpenAICompatibleAdapter",
    "anthropic": "providers.adapters.anthropic_messages.AnthropicMessagesAdapter",
    "gemini": "providers.adapters.gemini.GeminiAdapter",
    "ollama": "providers.adapters.ollama.OllamaAdapter",
}


class UnknownProviderKind(LookupError):
    pass


@cache
def adapter_for(kind: str) -> Adapter:
    """The adapter for `kind`, one instance per kind (adapters hold no per-request state)."""
    try:
        dotted = ADAPTERS[kind]
    except KeyError:
        raise UnknownProviderKind(
            f"no adapter for provider kind {kind!r}; known: {', '.join(sorted(ADAPTERS))}"
        ) from None
    module_name, _, class_name = dotted.rpartition(".")
    adapter_class = getattr(import_module(module_name), class_name)
    return cast(Adapter, adapter_class())
