"""`chat_stream`: the one path every request takes, whatever door it came through.

Rate limit → route (`route_decide`) → budget admission per model → response cache →
execution with fallback → cost → settle → one request log row. Entry points only translate
the events this yields; exactly one `Finished` or `Failed` ends every stream, and the log row is
written after it, so the client never waits on the database. The phases live in
`routing.pipeline`: `admission`, `cache`, `execution` (wired by `answer`) and the `ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable

from django.utils import timezone

from routing.hang_up import hang_up_pass
from routing.pipeline.admission import admit_request
from routing.pipeline.answer import chain_close, chain_context
from routing.pipeline.cache import answer_from_cache
from routing.pipeline.events import Event, Failed, Finished, GatewayRequest
from routing.pipeline.execution import execute_chain
from routing.pipeline.ledger import Ledger, RequestStatus, cost_received, finish


async def chat_stream(
    request: GatewayRequest, *, ended: Callable[[Ledger], None] | None = None
) -> AsyncGenerator[Event, None]:
    """The request's events. `ended`, when given, is called once with the request's ledger as
    its outcome is known (at its terminal event, or once a cancelled request has counted what it
    received), before its row is written: a plan by parts sums its calls' costs from it."""
    ledger = Ledger(request=request, created_at=timezone.now(), began=time.perf_counter())
    terminal: Event | None = None
    run = _run(request, ledger)
    try:
        # From here a client's hang-up ends the request as one `cancelled` row (routing/hang_up).
        hang_up_pass()
        async with contextlib.aclosing(run):
            async for event in run:
                if isinstance(event, Finished | Failed):
                    terminal = event
                    if ended is not None:
                        ended(ledger)
                yield event
    except (asyncio.CancelledError, GeneratorExit):
        if terminal is None:
            ledger.status = RequestStatus.CANCELLED
            ledger.error_code = "CANCELLED"
            cost_received(ledger, request)
            if ended is not None:
                ended(ledger)
        raise
    finally:
        # Queued at once, waited for shielded: a consumer that stops waiting cannot undo it.
        await asyncio.shield(finish(ledger))


async def _run(request: GatewayRequest, ledger: Ledger) -> AsyncGenerator[Event, None]:
    """Admission, then the answer (from the response cache, else from the chain of models),
    then its terminal event: one async-generator hop between `chat_stream` and the answer."""
    admitted = await admit_request(request, ledger)
    if isinstance(admitted, Failed):
        yield admitted
        return
    prepared = admitted.prepared
    answer: AsyncGenerator[Event, None]
    if prepared.cached is not None:
        answer = answer_from_cache(
            ledger, prepared.cached, admitted.started, admitted.config, admitted.rate_limit
        )
    else:
        answer = execute_chain(
            chain_context(request, ledger, admitted),
            chain=admitted.decision.chain,
            outcome=ledger.chain,
            buffered=request.buffered,
        )
    async with contextlib.aclosing(answer):
        async for event in answer:
            yield event
    if prepared.cached is None:
        yield await chain_close(request, ledger, admitted)
