"""The rooms' import direction: `orchestrator_site` → `chat` / `gateway` → `routing` →
`analytics` → `providers` → `core`. An import may only point down this list (never to a room
on the same floor), so no app imports the shell, `core` imports no app, and the apps can form
no import cycle. Every import counts, those inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# Lower floor, higher number; rooms on one floor may not import each other.
FLOORS = {
    "orchestrator_site": 0,
    "chat": 1,
    "gateway": 1,
    "routing": 2,
    "analytics": 3,
    "providers": 4,
    "core": 5,
}


def imported_rooms(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import in `source` that names a room."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in FLOORS]
    return found


def wrong_way(room: str, source: str) -> list[str]:
    """The imports of `source`, a module of `room`, that point up or sideways."""
    return [
        f"line {line}: {name}"
        for line, name in imported_rooms(source)
        if (target := name.split(".")[0]) != room and FLOORS[target] <= FLOORS[room]
    ]


def test_every_import_points_down() -> None:
    wrong = {}
    for room in FLOORS:
        for path in sorted((ROOT / room).rglob("*.py")):
            found = wrong_way(room, path.read_text())
            if found:
                wrong[str(path.relative_to(ROOT))] = found
    assert wrong == {}


def test_the_check_sees_imports_up_sideways_and_inside_functions() -> None:
    source = (
        "import core.db\n"
        "from providers.models import LLMModel\n"
        "from orchestrator_site.settings import X\n"
        "def f():\n"
        "    from chat import services\n"
        "    import routing.engine\n"
    )
    assert wrong_way("gateway", source) == [
        "line 3: orchestrator_site.settings",
        "line 5: chat",
    ]
    assert wrong_way("core", source) == [
        "line 2: providers.models",
        "line 3: orchestrator_site.settings",
        "line 5: chat",
        "line 6: routing.engine",
    ]
    assert wrong_way("orchestrator_site", source) == []


def test_every_room_is_checked() -> None:
    rooms = {
        path.parent.name
        for path in Path(ROOT).glob("*/apps.py")
        if path.parent.name not in {".venv", "tests", "bench"}
    }
    assert rooms <= set(FLOORS)
    assert all((ROOT / room / "__init__.py").exists() for room in FLOORS)
