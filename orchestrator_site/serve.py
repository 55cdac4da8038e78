"""The web process: `python -m orchestrator_site.serve [--host H] [--port P] [--workers N]`.

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

Workers: `--workers N` (WEB_WORKERS, default 1) runs N worker processes behind one listening
socket, under uvicorn's supervisor, which restarts a worker that dies. Each worker is started
fresh (multiprocessing's spawn, not fork) and imports the application itself, so connection
pools, worker threads, Redis clients and background tasks all belong to one process; the
supervisor never loads the application (no Django set-up, no connection to share). What the
workers share lives in Postgres and Redis (docs/deployment.md).

Shutdown: on SIGTERM (or Ctrl-C) a worker stops accepting connections, lets the answers in
flight finish for up to WEB_SHUTDOWN_TIMEOUT_S (default 10), cancels the rest (a stream ends
with an error frame, and its request is logged as cancelled), waits for its pending log and
budget writes, and exits 0. A second signal stops waiting for answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

from core.shutdown import answers_cut_short
from orchestrator_site.prometheus_dir import prometheus_dir_prepare

APPLICATION = "orchestrator_site.asgi:application"
# Once the answers still running at the deadline are cancelled, how long they get to end, and
# then how long the process waits for the log rows and settlements they and earlier requests
# left pending (each is normally a few milliseconds).
CANCELLED_ANSWERS_S = 2.0
PENDING_WRITES_S = 5.0


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator_site.serve")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="proxies whose X-Forwarded-For / -Proto are trusted (comma-separated, or *)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_WORKERS", "1")),
        help="worker processes behind the one port (default: WEB_WORKERS, else 1)",
    )
    parser.add_argument(
        "--shutdown-timeout-s",
        type=float,
        default=float(os.environ.get("WEB_SHUTDOWN_TIMEOUT_S", "10")),
        help="on SIGTERM, how long answers in flight may run before they are cancelled",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1 and not os.environ.get("REDIS_URL", "").strip():
        # Without Redis the cache, rate limits, breakers, channel layer and request journal
        # live in each process's memory: several workers would each keep their own.
        parser.error("--workers above 1 needs REDIS_URL (state the workers share lives there)")
    if args.shutdown_timeout_s < 0:
        parser.error("--shutdown-timeout-s must not be negative")
    return args


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a bounded graceful shutdown that ends with the process's pending
    writes done (see the module's docstring).

    uvicorn's own shutdown cancels what is left at its deadline and returns at once, before
    the cancelled requests have written anything, and its process then re-raises the signal
    and dies of it; this one waits for them, flushes, and returns normally."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for answers
        self.should_exit = True
        # Not recorded for re-raising: the shutdown is complete when `serve` returns.

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        # Idle keep-alive connections close now; busy ones once their answer is sent.
        for connection in list(self.server_state.connections):
            connection.shutdown()
        timeout_s = self.config.timeout_graceful_shutdown
        deadline = time.monotonic() + (10.0 if timeout_s is None else timeout_s)
        state = self.server_state
        while (state.connections or state.tasks) and not self.force_exit:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        running = list(state.tasks)
        if running:
            answers_cut_short()
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=CANCELLED_ANSWERS_S)
        await _pending_writes_done(PENDING_WRITES_S)
        await self.lifespan.shutdown()


async def _pending_writes_done(timeout_s: float) -> None:
    """Wait for the request log rows, settlements and journal closes still being written."""
    from routing.pipeline.journal import journal_background_idle

    await journal_background_idle(timeout_s)


class _WorkerProcess(multiprocess.Process):
    """A worker of uvicorn's supervisor that serves with `DrainingServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


# A connection's transport stops taking writes (uvicorn's `send` waits) once this much of
# its answer waits unsent: with the upstream client's own buffer (providers.adapters.http_client) it
# bounds what one slow client's stream holds in this process (docs/benchmarks.md, "Paced
# streams"). uvloop's default is 64 KiB.
WRITE_BUFFER_HIGH_WATER = 32 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the write buffer's high-water mark above."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        set_limits = getattr(transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=WRITE_BUFFER_HIGH_WATER)
        super().connection_made(transport)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
    # Before any worker imports prometheus_client: several workers' counters add up there.
    prometheus_dir_prepare(workers=args.workers)
    config = uvicorn.Config(
        APPLICATION,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.shutdown_timeout_s,
    )
    if args.workers == 1:
        server = DrainingServer(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    # The supervisor builds every worker it starts (at first, on a restart, on SIGHUP or
    # SIGTTIN) from its module's `Process`; this process runs nothing but the supervisor.
    multiprocess.Process = _WorkerProcess  # type: ignore[misc]
    supervisor = multiprocess.Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
