"""Whether this process's graceful shutdown has cut its in-flight answers short.

The web process (`orchestrator_site.serve`) lets answers in flight finish for up to
WEB_SHUTDOWN_TIMEOUT_S after SIGTERM; those still running then are cancelled. An answer that
sees its cancellation while this is set ends its response cleanly (a streamed answer with a
last error frame) instead of dropping the connection mid-body. A client going away is an
ordinary cancellation and never sets it.
"""

from __future__ import annotations

_cut_short = False

SHUTDOWN_MESSAGE = "The server is shutting down; the answer was cut short. Retry the request."


def answers_cut_short() -> None:
    """Called by the web process just before it cancels the answers still in flight."""
    global _cut_short
    _cut_short = True


def cut_short_by_shutdown() -> bool:
    """Whether a cancellation seen now comes from the process shutting down."""
    return _cut_short
