"""What every part of a configuration file shares: the format version, the error that lists
every problem of a file (`ConfigFileError`), the report of what applying it changed, and the
reader that walks YAML nodes and turns each problem into 'line N: ...'. Also the helpers that
save and compare rows while applying; the parts themselves live in `providers`, `policies` and
`budgets`, and `document` reads, applies and writes a whole file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.core.exceptions import ValidationError

FORMAT_VERSION = 1


class ConfigFileError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class Reader:
    """Walks YAML nodes, turning them into values and every problem into 'line N: ...'."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._loader = yaml.SafeLoader("")

    def error(self, node: yaml.Node, message: str) -> None:
        self.errors.append(f"line {node.start_mark.line + 1}: {message}")

    def mapping(
        self, node: yaml.Node, where: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{where} must be a mapping")
            return None
        items: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in items:
                self.error(key_node, f"{where}: {key!r} given twice")
            elif key not in required and key not in optional:
                allowed = ", ".join((*required, *optional))
                self.error(key_node, f"{where}: unknown key {key!r}; expected one of {allowed}")
            items[key] = value_node
        for key in required:
            if key not in items:
                self.error(node, f"{where}: {key!r} is required")
        return items

    def sequence(self, node: yaml.Node | None, where: str) -> list[yaml.Node]:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{where} must be a list")
            return []
        return list(node.value)

    def value(self, node: yaml.Node) -> Any:
        return self._loader.construct_object(node, deep=True)

    def typed(
        self, node: yaml.Node | None, where: str, kind: type | tuple[type, ...], default: Any = None
    ) -> Any:
        if node is None:
            return default
        value = self.value(node)
        if isinstance(value, bool) and kind is not bool:
            value = None
        if not isinstance(value, kind):
            self.error(node, f"{where} must be {_kind_name(kind)}; got {node.value!r}")
            return default
        return value

    def choice(
        self,
        node: yaml.Node | None,
        where: str,
        choices: tuple[str, ...],
        default: str | None = None,
    ) -> Any:
        value = self.typed(node, where, str, default)
        if node is not None and isinstance(value, str) and value not in choices:
            self.error(node, f"{where}: {value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def price(self, node: yaml.Node | None, where: str, *, nullable: bool = True) -> Decimal | None:
        expected = "a number or null" if nullable else "a number"
        if node is None:
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            if not nullable:
                self.error(node, f"{where} must be {expected}")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{where} must be {expected}")
            return None
        try:
            # From the text as written, so 0.1 stays exactly 0.1.
            price = Decimal(str(node.value))
        except InvalidOperation:
            self.error(node, f"{where} must be {expected}; got {node.value!r}")
            return None
        if price < 0 or not price.is_finite():
            self.error(node, f"{where} must be >= 0")
            return None
        return price

    def json_field(
        self, node: yaml.Node | None, where: str, check: Callable[[Any], list[str]], default: Any
    ) -> Any:
        if node is None:
            return default
        value = self.value(node)
        for message in check(value):
            self.error(node, f"{where}: {message}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


@dataclass
class Located:
    """A part of the file as read, with its YAML node (the line of every later error)."""

    node: yaml.Node
    data: dict[str, Any]


class ApplyFailed(Exception):
    """Problems found while applying (unknown names, invalid rows): raised by `config_apply`
    as a `ConfigFileError` once the transaction is rolled back."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors


def node_line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


def row_save(instance: Any, node: yaml.Node, label: str) -> None:
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
        raise ApplyFailed([f"{node_line(node)}: {label}: {problems}"]) from error
    instance.save()


def row_sync(instance: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(instance, key) != value:
            setattr(instance, key, value)
            changed = True
    return changed


def price_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text
