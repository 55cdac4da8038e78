"""The zero-setup site (SQLite, no Redis, tasks without a broker) in a child process.

The suite itself runs on Postgres; what only SQLite does wrong is checked by running a script
under the default settings with no DATABASE_URL and no REDIS_URL, exactly as `make run` does.
The database is migrated once per session and copied for each test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATABASE_FILE = "orchestrator.sqlite3"


def zero_setup_env(var_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL"} and not k.startswith("ORCHESTRATOR_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="orchestrator_site.settings",
        ORCHESTRATOR_VAR_DIR=str(var_dir),
        ORCHESTRATOR_AGENT_SAMPLING="off",
        SECRET_KEY="zero-setup-test",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated zero-setup database (its folder), made once per session."""
    var_dir = tmp_path_factory.mktemp("sqlite-template")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=zero_setup_env(var_dir),
        check=True,
        timeout=120,
    )
    return var_dir


def sqlite_site_run(
    template: Path, var_dir: Path, module: str, *args: str, timeout_s: float = 120
) -> dict[str, Any]:
    """Run `python -m module args…` on a copy of the migrated database in `var_dir`; the JSON
    object its last line of output holds."""
    var_dir.mkdir(parents=True, exist_ok=True)
    for path in template.glob(f"{DATABASE_FILE}*"):
        shutil.copy(path, var_dir / path.name)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=zero_setup_env(var_dir),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(
            f"{module} exited with {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result
