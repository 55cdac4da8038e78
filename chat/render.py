"""Model output is untrusted: Markdown is rendered with raw HTML disabled, then sanitised.

markdown-it escapes any HTML in the text (html=False), and nh3 keeps only the tags and
attributes below, so neither a tag nor an event handler nor a `javascript:` link from a
model can reach the page.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_MARKDOWN = (
    MarkdownIt("commonmark", {"html": False, "linkify": False})
    .enable("table")
    .enable("strikethrough")
)
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote",
        "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})


def markdown_render(text: str) -> str:
    """Safe HTML for `text`; code blocks keep their `language-*` class."""
    return nh3.clean(
        _MARKDOWN.render(text),
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
    )
