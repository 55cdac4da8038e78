"""The web process: `python -m orchestrator_site.serve [--host H] [--port P]`.

uvicorn serves `orchestrator_site.asgi:application` (HTTP and websockets) on uvloop's event
loop, parsing HTTP with httptools and websockets with the `websockets` package. `make run`, the
Docker image, `docker compose`, the live-server tests and `bench/gateway.py` all start the web
process through this module, so what is measured and tested is what is deployed.

Why uvicorn rather than daphne: on the gateway's path a third of daphne's time went to Twisted
(HTTP parsing, its reactor on top of asyncio, the reply's write path); the same application
under uvicorn with uvloop and httptools spends less CPU per request and serves more requests per
second from one core (docs/benchmarks.md, "Gateway"). daphne stays installed for
`manage.py runserver` and can still serve the same application.

Logging: uvicorn leaves the logging configuration to Django's `LOGGING`, so its own lines go
through the site's JSON handler like every other line (warnings and errors; see settings). It
writes no access log: every API request is already a row of the request log.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator_site.serve")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="proxies whose X-Forwarded-For / -Proto are trusted (comma-separated, or *)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
    from orchestrator_site.asgi import application

    uvicorn.run(
        application,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
