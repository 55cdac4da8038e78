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

# The task types of the model API seed, accepted on every door as names for the taxonomy's own
# (docs/routing.md, "Task type and complexity"). The name sent is kept in the decision trace; the
# log row and the policies see the task it maps to.
TASK_TYPE_ALIASES: dict[str, str] = {
    "code_generation": "code",
    "code_completion": "code",
    "code_optimization": "code",
    "code_review": "code",
    "refactoring": "code",
    "debugging": "code",
    "bug_fixing": "code",
    "code_translation": "code",
    "code_explanation": "explanation",
    "test_generation": "testing",
    "unit_testing": "testing",
    "documentation_generation": "documentation",
    "summarization": "analysis",
    "data_analysis": "analysis",
    "reasoning": "analysis",
    "math": "analysis",
    "question_answering": "explanation",
    "creative_writing": "creative",
    "content_generation": "creative",
    "translation": "general",
    "chat": "general",
    "conversation": "general",
    "classification": "simple",
    "extraction": "simple",
}


def task_type_resolve(name: str) -> str | None:
    """The taxonomy's task type for `name` (one of `TASK_TYPES` or a seed alias), or None."""
    if name in TASK_TYPES:
        return name
    return TASK_TYPE_ALIASES.get(name)
