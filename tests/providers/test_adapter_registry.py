from __future__ import annotations

import pytest

from providers.adapters.anthropic_messages import AnthropicMessagesAdapter
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.openai_chat import OpenAIChatAdapter, OpenAICompatibleAdapter
from providers.adapters.registry import ADAPTERS, UnknownProviderKind, adapter_for
from providers.models import Provider


@pytest.mark.parametrize(
    ("kind", "adapter_type"),
    [
        ("openai", OpenAIChatAdapter),
        ("openai_compatible", OpenAICompatibleAdapter),
        ("anthropic", AnthropicMessagesAdapter),
        ("gemini", GeminiAdapter),
        ("ollama", OllamaAdapter),
    ],
)
def test_each_kind_has_its_adapter(kind, adapter_type):
    adapter = adapter_for(kind)

    assert type(adapter) is adapter_type
    assert adapter_for(kind) is adapter


def test_every_provider_kind_in_the_schema_has_a_row():
    assert set(Provider.Kind.values) == set(ADAPTERS)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(UnknownProviderKind) as caught:
        adapter_for("bedrock")

    assert str(caught.value) == (
        "no adapter for provider kind 'bedrock'; known: anthropic, gemini, ollama, openai, "
        "openai_compatible"
    )
