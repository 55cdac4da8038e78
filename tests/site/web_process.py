"""The production web process (`python -m orchestrator_site.serve`) started by a test on a free
port and the test database, with the command-line options the test gives."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psutil  # type: ignore[import-untyped]

from providers.local_model import free_port
from tests.conftest import ROOT, TEST_VAR_DIR, subprocess_env, wait_http


@contextmanager
def web_process(
    *args: str, log_name: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m orchestrator_site.serve` on a free port and the test database; its URL and
    process. `env` overrides variables of its environment. Stopped (and reaped) on the way
    out whatever happened."""
    port = free_port()
    TEST_VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(TEST_VAR_DIR / f"{log_name}.log", "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator_site.serve", "--port", str(port), *args],
            cwd=ROOT,
            env=subprocess_env(**(env or {})),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health", process)
            yield url, process
        finally:
            stop(process)


def worker_pids(process: subprocess.Popen[bytes]) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    return {
        child.pid
        for child in psutil.Process(process.pid).children()
        if "spawn_main" in " ".join(child.cmdline())
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL for the web process and its workers if it does not exit."""
    if process.poll() is not None:
        return
    children = psutil.Process(process.pid).children(recursive=True)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
