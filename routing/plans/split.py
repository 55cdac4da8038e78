"""Cut a long document into parts on its natural boundaries. Pure: no I/O, no clock.

A document is read as blocks: a fenced code block (from a ``` or ~~~ line to its closing
fence) is one block and is never cut while it fits a part; a Markdown heading starts a new
block; otherwise blocks are paragraphs, separated by blank lines. Blocks are packed in order
into parts of at most `max_tokens`; each part after the first opens with the last blocks of the
part before it, up to `overlap_tokens`, so a sentence that leans on the paragraph above it keeps
it. A block larger than a part is cut at line ends, and a line larger than a part at a hard
character count (the only cut that can land mid-word).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

FENCE = re.compile(r"^(?:```|~~~)")
HEADING = re.compile(r"^#{1,6}\s")

TokenCount = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a document: its text (the overlap included) and where it sits."""

    index: int
    text: str
    start: int
    """Character offset in the document of the part's first new block (after its overlap)."""
    end: int
    overlap_chars: int
    """How many characters at the start of `text` repeat the previous part."""
    tokens: int


def blocks(document: str) -> list[str]:
    """The document's blocks, in order; joined, they give the document back exactly."""
    found: list[str] = []
    current: list[str] = []
    fenced = False
    for line in document.splitlines(keepends=True):
        stripped = line.lstrip()
        if fenced:
            current.append(line)
            if FENCE.match(stripped):
                fenced = False
                found.append("".join(current))
                current = []
            continue
        if FENCE.match(stripped) or HEADING.match(line):
            if current:
                found.append("".join(current))
            current = [line]
            fenced = bool(FENCE.match(stripped))
            continue
        current.append(line)
        if not line.strip():
            # A blank line ends the paragraph (and belongs to it).
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return _merge_blank(found)


def _merge_blank(found: list[str]) -> list[str]:
    """Blank lines after a paragraph stay with it, not as blocks of their own."""
    merged: list[str] = []
    for block in found:
        if merged and not block.strip():
            merged[-1] += block
        else:
            merged.append(block)
    return merged


def _pieces(block: str, max_tokens: int, count: TokenCount) -> list[str]:
    """`block` cut into pieces of at most `max_tokens`: at line ends, else by characters."""
    if count(block) <= max_tokens:
        return [block]
    pieces: list[str] = []
    current: list[str] = []
    # Summed line by line: a sum of rounded-up counts is never below the count of the whole.
    current_tokens = 0
    for line in block.splitlines(keepends=True):
        line_tokens = count(line)
        if line_tokens > max_tokens:
            if current:
                pieces.append("".join(current))
                current, current_tokens = [], 0
            pieces.extend(_hard_cut(line, max_tokens, count))
            continue
        if current and current_tokens + line_tokens > max_tokens:
            pieces.append("".join(current))
            current, current_tokens = [], 0
        current.append(line)
        current_tokens += line_tokens
    if current:
        pieces.append("".join(current))
    return pieces


def _hard_cut(line: str, max_tokens: int, count: TokenCount) -> list[str]:
    pieces: list[str] = []
    start = 0
    while start < len(line):
        low, high = start + 1, len(line)
        # The longest prefix that fits (at least one character, so the cut always advances).
        while low < high:
            middle = (low + high + 1) // 2
            if count(line[start:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        pieces.append(line[start:low])
        start = low
    return pieces


def document_split(
    document: str, *, max_tokens: int, overlap_tokens: int, count: TokenCount
) -> list[Part]:
    """The parts of `document`, each of at most `max_tokens` by `count` (its overlap included).
    The overlap is at most `overlap_tokens` and at most half a part."""
    if max_tokens < 1:
        raise ValueError("a part must hold at least one token")
    overlap_tokens = min(overlap_tokens, max_tokens // 2)
    units: list[tuple[str, int]] = []
    for block in blocks(document):
        for piece in _pieces(block, max_tokens, count):
            units.append((piece, count(piece)))
    parts: list[Part] = []
    offset = 0
    index = 0
    while index < len(units):
        overlap: list[tuple[str, int]] = []
        if parts:
            taken = 0
            back = index - 1
            while back >= 0 and taken + units[back][1] <= overlap_tokens:
                taken += units[back][1]
                overlap.insert(0, units[back])
                back -= 1
        used = sum(tokens for _, tokens in overlap)
        chosen: list[tuple[str, int]] = []
        while index < len(units):
            if chosen and used + units[index][1] > max_tokens:
                break
            while not chosen and overlap and used + units[index][1] > max_tokens:
                # The overlap gives way, from its start, to a unit that needs the room.
                used -= overlap.pop(0)[1]
            chosen.append(units[index])
            used += units[index][1]
            index += 1
        head = "".join(text for text, _ in overlap)
        body = "".join(text for text, _ in chosen)
        parts.append(
            Part(
                index=len(parts),
                text=head + body,
                start=offset,
                end=offset + len(body),
                overlap_chars=len(head),
                tokens=used,
            )
        )
        offset += len(body)
    return parts
