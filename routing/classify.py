"""Moved to `routing.engine.classify`: this module only re-exports its names, because a custom
prompt classifier named by `ORCHESTRATOR_CLASSIFIER` (docs/routing.md) returns a
`Classification` and may import it, or the heuristic, from this path.
"""

from routing.engine.classify import (
    LONG_CONTEXT_TOKENS,
    SIMPLE_MAX_TOKENS,
    Classification,
    HeuristicClassifier,
    PromptClassifier,
    estimate_tokens,
)

__all__ = [
    "LONG_CONTEXT_TOKENS",
    "SIMPLE_MAX_TOKENS",
    "Classification",
    "HeuristicClassifier",
    "PromptClassifier",
    "estimate_tokens",
]
