"""A chat message too long for every model's window, read as a request and a document (pure).

The chat takes one text per turn, the question and whatever the user pasted with it. When no
model can hold it (routing/plans), its own words are told from the document by its paragraphs
(blank lines): the first, when it is short and more follows ("Summarise this report:" above
the report), else the last, when it is short ("What changed?" under it); else the whole
message is the document, and the request is to answer it.
"""

from __future__ import annotations

import re

REQUEST_MAX_CHARS = 2000
"""A first or last paragraph longer than this is part of the document, not the request."""
WHOLE_MESSAGE_REQUEST = "Answer my message: it is the document."
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def message_split(content: str) -> tuple[str, str]:
    """The request's own words and the document of a long chat message."""
    text = content.strip()
    paragraphs = [p.strip() for p in PARAGRAPH_BREAK.split(text) if p.strip()]
    if len(paragraphs) > 1:
        first, last = paragraphs[0], paragraphs[-1]
        if len(first) <= REQUEST_MAX_CHARS:
            return first, _after(text, first)
        if len(last) <= REQUEST_MAX_CHARS:
            return last, _before(text, last)
    return WHOLE_MESSAGE_REQUEST, text


def _after(text: str, head: str) -> str:
    return text[text.index(head) + len(head) :].strip("\n")


def _before(text: str, tail: str) -> str:
    return text[: text.rindex(tail)].strip("\n")
