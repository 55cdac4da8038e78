"""What the learned router reads of a prompt. Pure: the same text gives the same features.

Two kinds of features:
- terms: lowercased word unigrams, and bigrams of the first `BIGRAM_WORDS` words; every digit
  reads as "#", so "127" and "845" are the same word;
- shape: a few dense measures (length, numbers, arithmetic signs, question marks, answer options),
  once for every prompt and once more in a block of their own for multiple-choice prompts, open
  prompts and conversations, since what length means differs between them.

The cost is bounded: a text longer than `WINDOW_CHARS` is read as its first `HEAD_CHARS` and last
`WINDOW_CHARS - HEAD_CHARS` characters (counts found there are scaled up to the whole length).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_CHARS = 4_000
HEAD_CHARS = 3_000
BIGRAM_WORDS = 512
DIGIT = re.compile(r"\d")
WORD = re.compile(r"[a-z]+|#+|\S")
ARITHMETIC = "=+*/^%$"
OPTIONS = re.compile(r"(?m)^[ \t]*[A-D][.)][ \t]+(.*)$")
NEGATION = re.compile(r"\b(?:not|except|false|incorrect|least)\b", re.IGNORECASE)
Prompt = str | Sequence[str]

FORMATS = ("choice", "open", "turns")
# The shape values go twice: into a block all prompts share (what transfers between kinds of
# prompt, such as length) and into their format's own block.
BLOCKS = ("all", *FORMATS)
SHAPE_NAMES = (
    "log_chars",
    "log_words",
    "log_numbers",
    "log_number_shapes",
    "log_lines",
    "questions",
    "log_digits",
    "sqrt_arithmetic",
    "log_longest_option",
    "mean_word_chars",
    "negation",
    "bias",
)


@dataclass(frozen=True, slots=True)
class Reading:
    """The part of a prompt the router reads: the (windowed) text, its full length, its format
    and the multiple-choice options found in it."""

    text: str
    full_chars: int
    fmt: str
    options: tuple[str, ...]

    @property
    def scale(self) -> float:
        return self.full_chars / len(self.text) if self.text else 1.0


def read(prompt: Prompt) -> Reading:
    """A list of turns is read as one text, its turns joined by a blank line."""
    if isinstance(prompt, str):
        text = prompt
        turns = 1
    else:
        text = "\n\n".join(prompt)
        turns = len(prompt)
    full = len(text)
    if full > WINDOW_CHARS:
        text = text[:HEAD_CHARS] + "\n" + text[full - (WINDOW_CHARS - HEAD_CHARS) :]
    options = tuple(OPTIONS.findall(text))
    fmt = "turns" if turns > 1 else "choice" if len(options) >= 2 else "open"
    return Reading(text, full, fmt, options)


def words(text: str) -> list[str]:
    return WORD.findall(DIGIT.sub("#", text.lower()))


def term_counts(text: str) -> Counter[str]:
    """Unigram and bigram counts ("a b" is a bigram)."""
    found = words(text)
    counts = Counter(found)
    head = found[:BIGRAM_WORDS]
    counts.update(map(" ".join, itertools.pairwise(head)))
    return counts


def shape(reading: Reading, counts: Counter[str]) -> list[float]:
    """Dense shape features, in SHAPE_NAMES order (`counts`: the text's term counts)."""
    text = reading.text
    scale = reading.scale
    numbers = [(len(term), n) for term, n in counts.items() if term[0] == "#" and " " not in term]
    split = text.split()
    return [
        math.log1p(reading.full_chars),
        math.log1p(len(split) * scale),
        math.log1p(sum(n for _, n in numbers) * scale),
        math.log1p(len(numbers)),
        math.log1p(text.count("\n") * scale),
        float(min(text.count("?"), 3)),
        math.log1p(sum(size * n for size, n in numbers) * scale),
        math.sqrt(sum(map(text.count, ARITHMETIC)) * scale),
        math.log1p(max(map(len, reading.options), default=0)),
        (sum(map(len, split)) / len(split)) if split else 0.0,
        1.0 if NEGATION.search(text) else 0.0,
        1.0,
    ]


def shape_vector(reading: Reading, counts: Counter[str]) -> list[float]:
    """The shape values in the shared block and in their format's block; other blocks zero."""
    width = len(SHAPE_NAMES)
    values = shape(reading, counts)
    vector = [0.0] * (width * len(BLOCKS))
    vector[:width] = values
    start = BLOCKS.index(reading.fmt) * width
    vector[start : start + width] = values
    return vector
