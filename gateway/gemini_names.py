"""Gemini's field names: Google's parser reads a field by its JSON name (`maxOutputTokens`) or
its proto name (`max_output_tokens`), and refuses a name it does not know."""

from __future__ import annotations

import re
from typing import Any

from gateway.refusals import field_refused


def json_name(name: str) -> str:
    """`max_output_tokens` -> `maxOutputTokens`; a JSON name is left as it is."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def fields_named(raw: dict[str, Any], known: set[str], where: str) -> dict[str, Any]:
    """`raw` by JSON names; a name that is not in `known` is refused."""
    fields = {}
    for name, value in raw.items():
        field = json_name(name) if isinstance(name, str) else str(name)
        if field not in known:
            path = f"{where}.{name}" if where else str(name)
            raise field_refused(path, "is not a field of this request (Cannot find field)")
        fields[field] = value
    return fields
