"""The writes after an answer (settlement, token correction, log row), grouped across requests."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache, caches
from django.utils import timezone

from analytics.models import RequestLog
from analytics.outcome import RequestOutcome
from providers.models import LLMModel, Provider
from routing.budgets import BudgetClose, budget_reserve
from routing.guards.ratelimit import Limit, RateLimiter, TokenDebit
from routing.models import Budget, BudgetPeriod, BudgetReservation
from routing.pipeline import closing
from routing.pipeline.closing import RequestClose, RequestCloser

pytestmark = pytest.mark.django_db(transaction=True)


def outcome(**fields: Any) -> RequestOutcome:
    base: dict[str, Any] = {
        "created_at": timezone.now(),
        "entry_point": "openai",
        "status": "success",
        "cost_state": "reported",
    }
    return RequestOutcome(**(base | fields))


class CountingCloser(RequestCloser):
    """The real closer, noting the size of every group it writes; each write waits until
    `writing` is set."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__(limiter)
        self.groups: list[int] = []
        self.started = asyncio.Event()
        self.writing = asyncio.Event()
        write = self._write

        async def counted(closes: Sequence[RequestClose], limiter: RateLimiter) -> Any:
            self.groups.append(len(closes))
            self.started.set()
            await self.writing.wait()
            return await write(closes, limiter)

        self._write = counted


@pytest.fixture
def limiter() -> RateLimiter:
    cache.clear()
    return RateLimiter(caches.create_connection("default"))


async def test_requests_finishing_together_are_written_in_groups(limiter) -> None:
    await sync_to_async(Budget.objects.create)(name="all", limit_usd=Decimal("100"))
    reserve = sync_to_async(budget_reserve)
    reservations = [await reserve(max_cost_usd=Decimal("0.5")) for _ in range(20)]
    closer = CountingCloser(limiter)
    closes = [
        RequestClose(
            outcome=outcome(request_id=r.request_id, cost_usd=Decimal("0.25")),
            settlement=(
                BudgetClose.settled(r, Decimal("0.25"))
                if index % 2 == 0
                else BudgetClose.released(r)
            ),
        )
        for index, r in enumerate(reservations)
    ]

    first = asyncio.ensure_future(closer.close(closes[0]))
    await closer.started.wait()
    # The first is being written at once, alone; the other 19 arrive meanwhile.
    rest = asyncio.gather(*(closer.close(close) for close in closes[1:]))
    await asyncio.sleep(0)
    closer.writing.set()
    await asyncio.gather(first, rest)

    assert closer.groups == [1, 19]
    ids = await sync_to_async(
        lambda: set(RequestLog.objects.values_list("request_id", flat=True))
    )()
    assert ids == {r.request_id for r in reservations}
    period = await sync_to_async(BudgetPeriod.objects.get)()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("2.5"), Decimal(0))
    states = await sync_to_async(
        lambda: sorted(BudgetReservation.objects.values_list("state", flat=True))
    )()
    assert states == ["released"] * 10 + ["settled"] * 10


async def test_requests_finishing_a_moment_apart_are_gathered_into_one_group(limiter) -> None:
    closer = CountingCloser(limiter)
    closer.writing.set()
    first = asyncio.ensure_future(closer.close(RequestClose(outcome=outcome())))
    await asyncio.sleep(closing.GATHER_S / 4)
    assert closer.groups == []  # still gathering
    second = asyncio.ensure_future(closer.close(RequestClose(outcome=outcome())))

    await asyncio.gather(first, second)

    assert closer.groups == [2]
    assert await sync_to_async(RequestLog.objects.count)() == 2


async def test_a_group_with_a_bad_row_is_written_again_one_by_one(limiter) -> None:
    provider = await sync_to_async(Provider.objects.create)(
        name="gone", kind="openai", base_url="http://127.0.0.1:9"
    )
    model = await sync_to_async(LLMModel.objects.create)(provider=provider, name="old")
    model_id = model.pk
    await sync_to_async(model.delete)()  # deleted while its request ran
    closer = CountingCloser(limiter)
    closer.writing.set()
    good = [outcome() for _ in range(3)]
    orphan = outcome(model_id=model_id, model_name="old", provider_name="gone")
    await asyncio.gather(
        *(closer.close(RequestClose(outcome=o)) for o in [good[0], orphan, *good[1:]])
    )

    assert closer.groups == [4]  # one group, which failed on the orphan and was redone

    rows = await sync_to_async(
        lambda: {r.request_id: (r.model_id, r.model_name) for r in RequestLog.objects.all()}
    )()
    assert rows == {o.request_id: (None, "") for o in good} | {orphan.request_id: (None, "old")}


async def test_token_corrections_of_a_group_land_and_a_failed_write_reaches_its_request(
    limiter, monkeypatch
) -> None:
    tpm = Limit(1000, 1000)
    check = sync_to_async(limiter.check)
    await check(key_id=41, requests=None, tokens=tpm, token_cost=500)
    closer = RequestCloser(limiter)

    await closer.close(RequestClose(outcome=outcome(), debit=TokenDebit(41, tpm, -400)))

    # 500 charged up front, 100 used: 900 left.
    assert (await check(key_id=41, requests=None, tokens=tpm, token_cost=901)).allowed is False
    assert (await check(key_id=41, requests=None, tokens=tpm, token_cost=900)).allowed is True

    def broken(closes: Sequence[RequestClose], limiter: RateLimiter) -> list[Any]:
        raise RuntimeError("the writer broke")

    monkeypatch.setattr(closing, "requests_close", broken)
    broken_closer = RequestCloser(limiter)
    with pytest.raises(RuntimeError, match="the writer broke"):
        await broken_closer.close(RequestClose(outcome=outcome(request_id=uuid.uuid4())))


def test_event_loops_running_at_once_each_get_their_closes_written(limiter) -> None:
    """A worker may run async code in several threads, each with its own event loop."""
    closer = RequestCloser(limiter)
    outcomes = [outcome(), outcome()]
    start = threading.Barrier(2)
    finished: list[uuid.UUID] = []

    def run(one: RequestOutcome) -> None:
        start.wait(timeout=5)
        asyncio.run(closer.close(RequestClose(outcome=one)))
        finished.append(one.request_id)

    threads = [threading.Thread(target=run, args=(one,), daemon=True) for one in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(finished) == sorted(o.request_id for o in outcomes)
    logged = set(RequestLog.objects.values_list("request_id", flat=True))
    assert logged == {o.request_id for o in outcomes}
