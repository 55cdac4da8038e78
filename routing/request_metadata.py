"""Who a request is for and what it is part of: the caller's own end user, project and free tags,
read the same way on every door and stored on the request log (`RequestLog.end_user`,
`RequestLog.project`, `RequestTag`) for the reports' filters and breakdowns.

A body's metadata object names them `user_id`, `project_id` and `tags` (a list of strings, or
one comma-separated string, as OpenAI's string-only metadata needs); the headers
`x-orchestrator-user`, `x-orchestrator-project` and `x-orchestrator-tags` (comma-separated) give
them on any door, and fill what the body leaves out; `local_only` (a boolean, or "true" /
"false") and the header `x-orchestrator-local-only` keep the request on local models. A value
that could not be stored or that would make the reports ambiguous is refused with
`FieldInvalid` naming the body path or header.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routing.validation import FieldInvalid

END_USER_MAX_CHARS = 128  # RequestLog.end_user
PROJECT_MAX_CHARS = 64  # RequestLog.project
TAG_MAX_CHARS = 64  # RequestTag.tag
TAGS_MAX = 16

USER_HEADER = "x-orchestrator-user"
PROJECT_HEADER = "x-orchestrator-project"
TAGS_HEADER = "x-orchestrator-tags"
LOCAL_ONLY_HEADER = "x-orchestrator-local-only"


@dataclass(frozen=True, slots=True)
class RequestMetadata:
    end_user: str = ""
    project: str = ""
    tags: tuple[str, ...] = ()
    local_only: bool = False
    """The caller keeps this request on local models (docs/routing.md, "Privacy")."""


NO_METADATA = RequestMetadata()


def metadata_text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise FieldInvalid(field, "must be a string")
    value = value.strip()
    if len(value) > max_chars:
        raise FieldInvalid(field, f"must be at most {max_chars} characters")
    # NUL cannot be stored; other control characters (newlines, escapes) would break the CSV
    # export's rows and the report's links.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise FieldInvalid(field, "must not contain control characters")
    return value


def _tags(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items: list[Any] = value.split(",") if value.strip() else []
    elif isinstance(value, list):
        items = value
    else:
        raise FieldInvalid(field, "must be a list of strings or a comma-separated string")
    tags: list[str] = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]" if isinstance(value, list) else field
        tag = metadata_text(item, where, TAG_MAX_CHARS)
        if not tag:
            raise FieldInvalid(where, "must not be empty")
        if "," in tag:
            raise FieldInvalid(where, "must not contain a comma")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > TAGS_MAX:
        raise FieldInvalid(field, f"must hold at most {TAGS_MAX} tags")
    return tuple(tags)


def _flag(value: Any, field: str) -> bool:
    """A boolean, or its string form (OpenAI's metadata and headers hold only strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise FieldInvalid(field, "must be true or false")


def metadata_read(
    *,
    body: Any = None,
    path: str = "metadata",
    headers: Mapping[str, str] | None = None,
    keys: tuple[str, ...] = ("user_id", "project_id", "tags", "local_only"),
) -> RequestMetadata:
    """The metadata of one request from its body's metadata object (`body`, at `path`; only
    `keys` of it are read, other keys are left alone) and its headers, which fill what the body
    does not give."""
    if body is not None and not isinstance(body, dict):
        raise FieldInvalid(path, "must be an object")
    source: dict[str, Any] = body or {}
    given = {k: source[k] for k in keys if source.get(k) is not None}

    def pick(key: str, header: str) -> tuple[Any, str] | None:
        if key in given:
            return given[key], f"{path}.{key}" if path else key
        if headers is not None and headers.get(header) is not None:
            return headers[header], header
        return None

    user = pick("user_id", USER_HEADER)
    project = pick("project_id", PROJECT_HEADER)
    tags = pick("tags", TAGS_HEADER)
    local_only = pick("local_only", LOCAL_ONLY_HEADER)
    return RequestMetadata(
        end_user=metadata_text(*user, END_USER_MAX_CHARS) if user else "",
        project=metadata_text(*project, PROJECT_MAX_CHARS) if project else "",
        tags=_tags(*tags) if tags else (),
        local_only=_flag(*local_only) if local_only else False,
    )
