"""Checks every door runs on a request before admitting it, so that a request answered is a
request whose log row can be written.

Postgres refuses a NUL character in any text or JSON value, and the request log's columns have
fixed widths (`analytics.models.RequestLog`); a value that breaks either would be answered and
budgeted, and then its row would fail to write. The doors refuse such a request up front with
their own error shape, naming the field: `FieldInvalid.field` is its path in the request body
(`messages[2].content`, `tasks[0].metadata.note`).
"""

from __future__ import annotations

from typing import Any

# The largest `max_tokens` a request may ask for; above it no model's window could hold it, and
# the number would only overflow a counter on its way.
MAX_OUTPUT_TOKENS = 1_000_000
# The widths of the request log's columns that a request's own values reach.
MODEL_MAX_CHARS = 200  # RequestLog.requested_model
SESSION_MAX_CHARS = 128  # RequestLog.session_id
TASK_TYPE_MAX_CHARS = 32  # RequestLog.task_type
# A request's own fallback chain: as long as a routed chain may be (`PolicySpec.chain_limit`).
FALLBACK_CHAIN_MAX = 5


class FieldInvalid(ValueError):
    """A request field that cannot be admitted; `field` is its path in the request body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _joined(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def nul_field(value: Any, path: str = "") -> str | None:
    """The path of the first string (a value or an object key) in `value` holding a NUL
    character, or None when there is none."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            # The path names the key with its NUL escaped: the path goes into messages and
            # the refusal's log row, which could not hold the character itself.
            where = _joined(path, str(key).replace("\x00", "\\u0000"))
            if isinstance(key, str) and "\x00" in key:
                return where
            found = nul_field(item, where)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_field(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def nul_check(value: Any, path: str = "") -> None:
    """Refuse a NUL character anywhere in `value` (Postgres cannot store one)."""
    found = nul_field(value, path)
    if found is not None:
        raise FieldInvalid(found or "body", "must not contain a NUL character (\\u0000)")


def text_check(value: str | None, field: str, max_chars: int) -> None:
    """Refuse a string that does not fit the log column it reaches."""
    if value is None:
        return
    nul_check(value, field)
    if len(value) > max_chars:
        raise FieldInvalid(field, f"must be at most {max_chars} characters")


def max_tokens_check(value: Any, field: str = "max_tokens") -> int | None:
    """`max_tokens` as an int from 1 to `MAX_OUTPUT_TOKENS`, or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise FieldInvalid(field, f"must be an integer from 1 to {MAX_OUTPUT_TOKENS:,}")
    return value


def fallback_chain_check(value: Any, field: str = "fallback_chain") -> tuple[str, ...]:
    """A request's `fallback_chain`: a list of 1 to `FALLBACK_CHAIN_MAX` model names, each a
    non-empty string a log column could hold; () when absent. Whether each names an enabled
    model is the router's to say (routing.pipeline.admission.resolve_chain)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not 1 <= len(value) <= FALLBACK_CHAIN_MAX:
        raise FieldInvalid(
            field, f"must be a list of 1 to {FALLBACK_CHAIN_MAX} models ('provider:model')"
        )
    for index, entry in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(entry, str) or not entry:
            raise FieldInvalid(where, "must be a model name ('provider:model')")
        text_check(entry, where, MODEL_MAX_CHARS)
    return tuple(value)


def log_safe(value: str | None, max_chars: int) -> str | None:
    """`value` when a log column can hold it, else None: for the row of a refused request,
    which names what was asked only when it can."""
    if value is None or "\x00" in value or len(value) > max_chars:
        return None
    return value
