"""Task types, complexity levels and tiers: the vocabulary shared by policies and the engine."""

from __future__ import annotations

TASK_TYPES = (
    "code",
    "research",
    "analysis",
    "creative",
    "simple",
    "long_context",
    "documentation",
    "explanation",
    "testing",
    "general",
)
COMPLEXITIES = ("simple", "moderate", "complex")
TIERS = ("small_local", "large_local", "standard", "premium")

TASK_TYPE_CHOICES = [(t, t.replace("_", " ").capitalize()) for t in TASK_TYPES]
COMPLEXITY_CHOICES = [(c, c.capitalize()) for c in COMPLEXITIES]
