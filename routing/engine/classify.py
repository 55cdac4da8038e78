"""Task type and complexity of a prompt: a documented, deterministic heuristic.

Anything with a `classify(text) -> Classification` method can replace it (setting
`ORCHESTRATOR_CLASSIFIER`, a dotted path), e.g. a learned classifier. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from routing.engine.tokens import estimate_tokens

__all__ = ["Classification", "HeuristicClassifier", "PromptClassifier", "estimate_tokens"]

LONG_CONTEXT_TOKENS = 8000
SIMPLE_MAX_TOKENS = 24


@dataclass(frozen=True, slots=True)
class Classification:
    task_type: str
    complexity: str
    signals: dict[str, Any] = field(default_factory=dict)


class PromptClassifier(Protocol):
    def classify(self, text: str) -> Classification: ...


def _words(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(phrases) + r")\b", re.IGNORECASE)


# Earlier entries win ties: a request to test or document code is more specific than "code".
TASK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "testing",
        _words(r"unit tests?", r"test cases?", "pytest", "jest", r"write tests?", "coverage"),
    ),
    ("documentation", _words("docstrings?", "readme", "documentation", r"document (?:this|the)")),
    (
        "code",
        _words(
            "code",
            "function",
            "bug",
            "refactor",
            "compile",
            "python",
            "javascript",
            "typescript",
            "sql",
            "regex",
            "api",
            "stack trace",
            "exception",
            r"def",
            "class",
        ),
    ),
    ("creative", _words("story", "poem", "song", "lyrics", "fiction", "slogan", "imagine")),
    ("research", _words("research", "sources", "literature", "papers?", "cite", "survey")),
    (
        "analysis",
        _words(r"analy[sz]e", "analysis", "compare", "evaluate", "pros and cons", "trade-?offs?"),
    ),
    ("explanation", _words("explain", "what is", "why does", "how does", "describe")),
)

REASONING = _words(
    "prove",
    "derive",
    "design",
    "architecture",
    "optimi[sz]e",
    "step by step",
    r"trade-?offs?",
    "implement",
    "algorithm",
    "calculate",
    "how many",
    "how much",
    "justify",
    "multi-step",
    "strategy",
)
NUMBER = re.compile(r"\d+(?:\.\d+)?")
LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+", re.MULTILINE)

# A regex call holds the GIL until it returns, so classifying a large prompt in a worker thread
# in one call per pattern stalls the event loop for as long as each call runs. A large prompt
# is read in slices of about this many characters, each cut right after a newline: no pattern
# above matches across a line break's start (their phrases hold no newline, and a list item
# starts a line), so the counts are those of the whole text. Where no newline follows a cut,
# the rest is read in one piece.
SLICE_CHARS = 64 * 1024


def text_slices(text: str, slice_chars: int = SLICE_CHARS) -> list[tuple[int, int]]:
    """`(start, end)` bounds that cover `text`, each cut right after a newline."""
    bounds: list[tuple[int, int]] = []
    start, size = 0, len(text)
    while size - start > slice_chars:
        newline = text.find("\n", start + slice_chars)
        if newline < 0:
            break
        bounds.append((start, newline + 1))
        start = newline + 1
    bounds.append((start, size))
    return bounds


def match_count(pattern: re.Pattern[str], text: str, bounds: list[tuple[int, int]]) -> int:
    """`len(pattern.findall(text))`, one regex call per slice of `bounds`."""
    return sum(len(pattern.findall(text, start, end)) for start, end in bounds)


class HeuristicClassifier:
    """Scores length, reasoning words, code, questions, listed requirements and numbers.

    complexity: score <= 1 simple, 2-3 moderate, >= 4 complex. The thresholds and the measured
    agreement with outcomes of a cheap and a premium model are in docs/routing.md.
    """

    def classify(self, text: str) -> Classification:
        tokens = estimate_tokens(text)
        bounds = text_slices(text)
        hits = {name: match_count(pattern, text, bounds) for name, pattern in TASK_PATTERNS}
        if "```" in text:
            hits["code"] += 2
        best = max(hits.items(), key=lambda item: item[1])
        if tokens > LONG_CONTEXT_TOKENS:
            task_type = "long_context"
        elif best[1] > 0:
            task_type = best[0]
        elif tokens <= SIMPLE_MAX_TOKENS:
            task_type = "simple"
        else:
            task_type = "general"

        reasoning = match_count(REASONING, text, bounds)
        numbers = match_count(NUMBER, text, bounds)
        list_items = match_count(LIST_ITEM, text, bounds)
        questions = text.count("?")
        score = (
            (2 if tokens > 400 else 1 if tokens > 150 else 0)
            + min(reasoning, 2)
            + (1 if "```" in text else 0)
            + (1 if questions >= 2 else 0)
            + (1 if list_items >= 3 else 0)
            + (1 if numbers >= 3 else 0)
        )
        complexity = "simple" if score <= 1 else "moderate" if score <= 3 else "complex"
        signals = {
            "tokens": tokens,
            "reasoning_words": reasoning,
            "numbers": numbers,
            "list_items": list_items,
            "questions": questions,
            "score": score,
            "task_hits": {k: v for k, v in hits.items() if v},
        }
        return Classification(task_type, complexity, signals)
