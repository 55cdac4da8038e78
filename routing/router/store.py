"""Which router artifact is active, the kept versions, and rollback.

- The shipped artifact: `routing/router/artifacts/default.json` (rebuilt bit-for-bit by
  `manage.py router train --output routing/router/artifacts/default.json`).
- Retrained versions: `<ORCHESTRATOR_VAR_DIR>/router/versions/<version>.json`.
- The active version: the last line of `<ORCHESTRATOR_VAR_DIR>/router/ACTIVE` (every activation is
  appended, so rollback goes to the line before); no file means the shipped artifact.
- `ORCHESTRATOR_ROUTER_ARTIFACT` (a path) pins one file and ignores the rest.

A process loads the active artifact once and looks at the ACTIVE file's modification time at
most every `RECHECK_S` seconds, so an activation reaches every process of the host within that.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from routing.router.model import ArtifactError, Router, router_load

SHIPPED = Path(__file__).resolve().parent / "artifacts" / "default.json"
RECHECK_S = 5.0


@dataclass(frozen=True, slots=True)
class Version:
    version: str
    path: Path
    active: bool
    shipped: bool


def router_dir() -> Path:
    return Path(settings.VAR_DIR) / "router"


def versions_dir() -> Path:
    return router_dir() / "versions"


def active_file() -> Path:
    return router_dir() / "ACTIVE"


def _history() -> list[str]:
    try:
        lines = active_file().read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return []
    return [line.strip() for line in lines if line.strip()]


def shipped_version() -> str:
    return _shipped().version


_shipped_cache: list[Router] = []


def _shipped() -> Router:
    if not _shipped_cache:
        _shipped_cache.append(router_load(SHIPPED))
    return _shipped_cache[0]


def active_path() -> Path:
    pinned = getattr(settings, "ORCHESTRATOR_ROUTER_ARTIFACT", "") or ""
    if pinned:
        return Path(pinned)
    history = _history()
    if not history or history[-1] == shipped_version():
        return SHIPPED
    return versions_dir() / f"{history[-1]}.json"


def versions_list() -> list[Version]:
    active = active_path()
    found = [Version(shipped_version(), SHIPPED, active == SHIPPED, True)]
    if versions_dir().is_dir():
        for path in sorted(versions_dir().glob("*.json")):
            found.append(Version(path.stem, path, path == active, False))
    return found


def version_path(version: str) -> Path:
    if version == shipped_version():
        return SHIPPED
    path = versions_dir() / f"{version}.json"
    if "/" in version or not path.is_file():
        known = ", ".join(v.version for v in versions_list())
        raise ArtifactError(f"unknown router version {version!r}; known: {known}")
    return path


def version_activate(version: str) -> Router:
    """Make a kept version the active one (it is loaded first, so a bad file is refused)."""
    router = router_load(version_path(version))
    router_dir().mkdir(parents=True, exist_ok=True)
    with active_file().open("a", encoding="utf-8") as out:
        out.write(version + "\n")
    _cache.clear()
    return router


def version_rollback() -> Router:
    """Activate the version that was active before the current one."""
    history = _history() or [shipped_version()]
    current = history[-1]
    earlier = [v for v in history[:-1] if v != current]
    previous = earlier[-1] if earlier else shipped_version()
    if previous == current:
        raise ArtifactError(f"nothing to roll back to: {current} is the only version used")
    return version_activate(previous)


def version_store(body_bytes: bytes, version: str) -> Path:
    versions_dir().mkdir(parents=True, exist_ok=True)
    path = versions_dir() / f"{version}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body_bytes)
    os.replace(tmp, path)
    return path


_lock = threading.Lock()
_cache: dict[str, tuple[Router, Path, float, float]] = {}


def _stamp() -> float:
    try:
        return active_file().stat().st_mtime
    except FileNotFoundError:
        return 0.0


def active_router() -> Router:
    """The active router of this process (loaded once; a new activation is seen within
    RECHECK_S seconds)."""
    now = time.monotonic()
    held = _cache.get("active")
    if held is not None and now - held[3] < RECHECK_S:
        return held[0]
    with _lock:
        held = _cache.get("active")
        stamp = _stamp()
        if held is not None and held[2] == stamp and held[1] == active_path():
            _cache["active"] = (held[0], held[1], stamp, now)
            return held[0]
        path = active_path()
        router = router_load(path)
        _cache["active"] = (router, path, stamp, now)
        return router


def router_forget() -> None:
    """Drop the loaded router (tests, and after the settings change)."""
    _cache.clear()
    _shipped_cache.clear()
