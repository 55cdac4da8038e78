"""What is left of a request after its answer, written for many requests at once.

Every finished request has three writes left: its budget settlement (or release), the
correction of its token bucket, and its request log row. One request at a time, that was a
thread hop and two commits per request, and each commit waits for a WAL flush (~2 ms on an
ordinary disk) with the budget period's row locked, so every other request's hold on that
budget queued behind it.

Here a group gathers the requests that finish within GATHER_S of each other (and all those
that finish while the previous group is being written), and is written in one thread hop: the
rows in one transaction (sent in one round trip, one flush), then the settlements in another
(which does not wait for its flush: see `routing.budgets`), then the token corrections in one
Redis round trip. No client waits for this: its answer has left before its request joins a
group. Gathering for a moment makes groups of several requests even when requests come one at
a time a few milliseconds apart, and the moment is short enough that a row is in the log long
before anyone could look for it.

A group whose transaction fails (a row naming a model deleted meanwhile, a lost connection) is
rolled back whole and written again one request at a time, so one bad request costs the others
nothing. Every request still ends as exactly one row; the request journal covers a process that
dies before its group commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis
from django.db import DatabaseError, transaction

from analytics.outcome import RequestOutcome
from analytics.services import request_record, requests_record
from core.dependencies import DATABASE_AWAY
from core.threads import in_thread
from routing.budgets import BudgetClose, budgets_close
from routing.guards.ratelimit import RateLimiter, TokenDebit
from routing.pipeline.journal import grace_s as journal_grace_s

logger = logging.getLogger(__name__)

GROUP_MAX = 256
GATHER_S = 0.02
# While the database is away, a request's writes are tried again this often, by at most this
# many requests at once (beyond, their journal entries wait for the journal sweep).
RETRY_S = 1.0
RETRY_MAX = 10_000


@dataclass(frozen=True, slots=True)
class RequestClose:
    """One finished request's remaining writes."""

    outcome: RequestOutcome
    settlement: BudgetClose | None = None
    """The budget hold's settlement or release; None when nothing was held."""
    debit: TokenDebit | None = None


def requests_close(closes: Sequence[RequestClose], limiter: RateLimiter) -> list[Exception | None]:
    """Write `closes` as one group; for each request, None or the error that kept its writes
    from completing. The rows go first and commit durably; the settlements follow (see
    `budgets_close`: they can be redone from the rows)."""
    errors: list[Exception | None] = [None] * len(closes)
    together = False
    if len(closes) > 1:
        try:
            with transaction.atomic():
                requests_record(outcomes=[close.outcome for close in closes])
            together = True
        except DATABASE_AWAY as exc:
            # Not one request's fault: one by one, each would wait out the same bounded wait.
            return [exc] * len(closes)
        except DatabaseError as exc:
            logger.warning(
                "request close: %d rows failed together (%s); one by one", len(closes), exc
            )
    if not together:
        for index, close in enumerate(closes):
            try:
                request_record(outcome=close.outcome)  # one statement: its own transaction
            except DATABASE_AWAY as error:
                errors[index:] = [error] * (len(closes) - index)
                return errors
            except DatabaseError as error:
                errors[index] = error
    settling = [
        (index, close.settlement)
        for index, close in enumerate(closes)
        if close.settlement is not None
    ]
    try:
        budgets_close([settlement for _, settlement in settling])
    except DatabaseError as exc:
        if len(settling) > 1:
            logger.warning(
                "request close: %d settlements failed together (%s); one by one", len(settling), exc
            )
        for index, settlement in settling:
            try:
                budgets_close([settlement])
            except DatabaseError as error:
                errors[index] = errors[index] or error
    debits = [close.debit for close in closes if close.debit is not None]
    if debits:
        try:
            limiter.debit_many(debits)
        except redis.RedisError as exc:
            # A missed correction leaves the bucket at its up-front estimate; the rows stand.
            logger.warning("request close: %d token corrections lost: %s", len(debits), exc)
    return errors


class _LoopGroups:
    """The closes waiting in one event loop, and the task writing them."""

    def __init__(self) -> None:
        self.pending: list[tuple[RequestClose, asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None


class RequestCloser:
    """Groups the closes of each event loop's requests (see the module's docstring). Each loop
    has its own: a process may run several at once (a worker running async code from several
    threads), and a future belongs to one loop."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopGroups] = (
            weakref.WeakKeyDictionary()
        )
        self._write = in_thread(requests_close)
        # Request id -> when its writes first failed for want of the database.
        self._failing_since: dict[uuid.UUID, float] = {}

    async def close(self, request: RequestClose) -> None:
        """Returns once the request's writes are committed; raises what kept them from it."""
        await self.enqueue(request)

    def enqueue(self, request: RequestClose) -> asyncio.Future[None]:
        """Queue the request's writes; the future is done once they are committed (or holds
        what kept them from it). Called on the event loop, without waiting."""
        loop = asyncio.get_running_loop()
        groups = self._loops.get(loop)
        if groups is None:
            groups = self._loops[loop] = _LoopGroups()
        done = loop.create_future()
        groups.pending.append((request, done))
        if groups.writer is None or groups.writer.done():
            groups.writer = loop.create_task(self._write_pending(groups))
        return done

    async def _write_pending(self, groups: _LoopGroups) -> None:
        await asyncio.sleep(GATHER_S)
        while groups.pending:
            group = groups.pending[:GROUP_MAX]
            del groups.pending[: len(group)]
            try:
                errors = await self._write([close for close, _ in group], self.limiter)
            except asyncio.CancelledError:
                for _, done in group:
                    done.cancel()
                raise
            except DATABASE_AWAY as exc:
                errors = [exc] * len(group)
            except Exception as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (close, done), error in zip(group, errors, strict=True):
                if done.done():
                    continue
                if isinstance(error, DATABASE_AWAY) and self._retry_later(groups, close, done):
                    continue
                self._failing_since.pop(close.outcome.request_id, None)
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _retry_later(
        self, groups: _LoopGroups, close: RequestClose, done: asyncio.Future[None]
    ) -> bool:
        """Write `close` again in RETRY_S, while the database is away (docs/guards.md): the
        request's row lands within RETRY_S of the database being back. False when it has been
        failing for longer than the journal's grace period (the journal sweep writes it then)
        or too many requests already wait (their journal entries are kept meanwhile)."""
        now = time.monotonic()
        request_id = close.outcome.request_id
        since = self._failing_since.setdefault(request_id, now)
        if now - since > journal_grace_s() or len(self._failing_since) > RETRY_MAX:
            self._failing_since.pop(request_id, None)
            return False
        # The token correction went out with the first try (Redis, not the database).
        again = replace(close, debit=None)

        def requeue() -> None:
            groups.pending.append((again, done))
            if groups.writer is None or groups.writer.done():
                groups.writer = asyncio.get_running_loop().create_task(self._write_pending(groups))

        asyncio.get_running_loop().call_later(RETRY_S, requeue)
        return True
