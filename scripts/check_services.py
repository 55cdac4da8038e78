"""Fail fast, with instructions, when the test suite's Postgres or Redis is unreachable."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/orchestrator",
    "REDIS_URL": "redis://127.0.0.1:6379/15",  # as orchestrator_site/test_settings.py
}
HOW_TO_START = {
    "DATABASE_URL": (
        "Start Postgres, e.g.\n"
        "  Debian:  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
        "  Docker:  docker compose up -d postgres\n"
        "or point DATABASE_URL at a reachable server (user needs CREATEDB)."
    ),
    "REDIS_URL": (
        "Start Redis, e.g.\n"
        "  Debian:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''\n"
        "  Docker:  docker compose up -d redis\n"
        "or point REDIS_URL at a reachable server."
    ),
}


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def main() -> int:
    failed = False
    for name, port in (("DATABASE_URL", 5432), ("REDIS_URL", 6379)):
        url = os.environ.get(name) or DEFAULTS[name]
        if not url.startswith(("postgres", "redis")):
            print(f"{name}={url!r}: the test suite needs Postgres and Redis, never SQLite/memory.")
            failed = True
        elif not reachable(url, port):
            host = urlparse(url)
            print(f"{name}: nothing answers at {host.hostname}:{host.port or port}.")
            print(HOW_TO_START[name])
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
