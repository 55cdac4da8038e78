"""Token counts good enough to plan with, without a tokenizer.

No provider's tokenizer ships with the gateway (tiktoken is not a dependency, and the bundled
model's tokenizer lives in its weights, loaded only by its own process), so counts are
estimates, made to err on the high side:

- `estimate_tokens` (routing, rate limits, budget holds): four characters per token of ASCII
  text, as every English-and-code tokenizer of the supported families does or better; each
  character outside ASCII costs one more token per extra UTF-8 byte pair, so a CJK character
  (three bytes) counts 1.25 tokens and a Cyrillic one (two bytes) 0.75, where the four-character
  rule alone would count a quarter and under-count such a text up to fourfold.
- `plan_tokens` (long-context plans, routing/plans): the same count at the model family's
  characters per token (`CHARS_PER_TOKEN`), and the plan keeps `PLAN_MARGIN_PCT` of every
  window free on top (`window_usable`), so a part the estimate puts at the limit still fits a
  tokenizer that counts a tenth more.

Pure and cheap: one `len` for ASCII text, one UTF-8 encoding otherwise (about a millisecond a
megabyte); `bench/plans.py` measures it on a 1 M-token document.
"""

from __future__ import annotations

import math

ASCII_CHARS_PER_TOKEN = 4.0
"""Characters per token of `estimate_tokens` (the routing estimate)."""

CHARS_PER_TOKEN: dict[str, float] = {
    # English prose and code: cl100k/o200k (OpenAI) and Gemini's tokenizer give 4 or more.
    "openai": 4.0,
    "gemini": 4.0,
    # Claude's tokenizer runs denser on code and markup.
    "anthropic": 3.5,
    # Llama, Mistral, Qwen and other open weights (Ollama, OpenAI-compatible servers, the bundled
    # model): 32 k-vocabulary tokenizers give about 3.3 on English.
    "ollama": 3.3,
    "openai_compatible": 3.3,
    "local": 3.3,
}
DEFAULT_CHARS_PER_TOKEN = 3.3
"""Any other provider kind: the densest of the families above."""

PLAN_MARGIN_PCT = 10
"""Share of a model's context window a plan leaves unused for the estimate's error."""


def _extra_bytes(text: str) -> int:
    return 0 if text.isascii() else len(text.encode("utf-8")) - len(text)


def estimate_tokens(text: str) -> int:
    """About four characters per token for English text and code, more tokens for text outside
    ASCII (see the module docstring); never zero for a prompt."""
    if not text:
        return 0
    extra = _extra_bytes(text)
    return max(1, (len(text) + 3) // 4 + (extra + 1) // 2)


def plan_tokens(text: str, provider_kind: str = "") -> int:
    """The tokens of `text` for a model of `provider_kind`, rounded up (module docstring)."""
    if not text:
        return 0
    per_token = CHARS_PER_TOKEN.get(provider_kind, DEFAULT_CHARS_PER_TOKEN)
    return math.ceil(len(text) / per_token + _extra_bytes(text) / 2)


def chars_for_tokens(tokens: int, provider_kind: str = "") -> int:
    """How many ASCII characters `plan_tokens` counts as at most `tokens` for this family."""
    per_token = CHARS_PER_TOKEN.get(provider_kind, DEFAULT_CHARS_PER_TOKEN)
    return max(0, math.floor(tokens * per_token))


def window_usable(context_window: int) -> int:
    """The tokens of a window a plan may fill: the window less `PLAN_MARGIN_PCT`."""
    return context_window * (100 - PLAN_MARGIN_PCT) // 100
