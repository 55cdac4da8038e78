from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connection, connections, transaction

from analytics.outcome import RequestOutcome
from analytics.services import request_record
from providers.models import LLMModel, Provider
from routing.budgets import (
    BudgetClose,
    BudgetExceeded,
    Reservation,
    budget_guard,
    budget_release,
    budget_reservations_expire,
    budget_reserve,
    budget_settle,
    budgets_close,
    period_bounds,
    request_max_cost_usd,
)
from routing.models import Budget, BudgetAlert, BudgetPeriod, BudgetReservation

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make_budget(name: str = "monthly", limit: str = "1.00", **fields: object) -> Budget:
    return Budget.objects.create(name=name, limit_usd=Decimal(limit), **fields)


def period_of(budget: Budget) -> BudgetPeriod:
    return BudgetPeriod.objects.get(budget=budget)


# --- calendar periods ----------------------------------------------------------------------


def test_periods_are_calendar_aligned_in_the_configured_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 23:30 UTC on Sunday 30 November is already Monday 1 December in Berlin.
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)

    assert period_bounds("day", at, berlin) == (
        datetime(2026, 12, 1, tzinfo=berlin),
        datetime(2026, 12, 2, tzinfo=berlin),
    )
    assert period_bounds("week", at, berlin) == (
        datetime(2026, 11, 30, tzinfo=berlin),
        datetime(2026, 12, 7, tzinfo=berlin),
    )
    assert period_bounds("month", at, berlin) == (
        datetime(2026, 12, 1, tzinfo=berlin),
        datetime(2027, 1, 1, tzinfo=berlin),
    )


def test_a_day_across_a_dst_change_keeps_local_midnights() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = period_bounds("day", datetime(2026, 10, 25, 12, tzinfo=UTC), berlin)

    assert start.astimezone(UTC) == datetime(2026, 10, 24, 22, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 10, 25, 23, tzinfo=UTC)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=25)


# --- reserve and settle --------------------------------------------------------------------


@pytest.mark.django_db
def test_reserve_then_settle_moves_the_hold_into_spend() -> None:
    budget = make_budget()

    reservation = budget_reserve(max_cost_usd=Decimal("0.30"), now=NOW)
    period = period_of(budget)
    assert (period.spent_usd, period.reserved_usd) == (Decimal(0), Decimal("0.30"))
    assert (period.starts_at, period.ends_at) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )

    budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.1234"), now=NOW)
    budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.1234"), now=NOW)
    budget_release(reservation=reservation, now=NOW)

    period.refresh_from_db()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.1234"), Decimal(0))
    line = BudgetReservation.objects.get()
    assert (line.state, line.actual_usd) == ("settled", Decimal("0.1234"))


@pytest.mark.django_db
def test_over_the_limit_is_refused_naming_the_budget_and_holds_nothing() -> None:
    make_budget(limit="1.00")
    budget_reserve(max_cost_usd=Decimal("0.70"), now=NOW)

    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(max_cost_usd=Decimal("0.30000001"), now=NOW)

    assert refused.value.code == "BUDGET_EXCEEDED"
    assert refused.value.budget_name == "monthly"
    assert str(refused.value).startswith("Budget 'monthly' exceeded: ")
    assert BudgetReservation.objects.count() == 1
    # Exactly the room that is left still fits.
    budget_reserve(max_cost_usd=Decimal("0.30"), now=NOW)
    assert BudgetPeriod.objects.get().reserved_usd == Decimal("1.00")


@pytest.mark.django_db
def test_a_refusal_by_one_budget_holds_nothing_on_the_others(django_user_model) -> None:
    user = django_user_model.objects.create(username="ada")
    global_budget = make_budget("everyone", limit="100")
    make_budget("ada", limit="0.05", scope=Budget.Scope.USER, user=user)

    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(max_cost_usd=Decimal("0.10"), user_id=user.pk, now=NOW)

    assert refused.value.budget_name == "ada"
    assert period_of(global_budget).reserved_usd == Decimal(0)
    assert not BudgetReservation.objects.exists()
    # Another user is covered by the global budget only.
    other = budget_reserve(max_cost_usd=Decimal("0.10"), user_id=user.pk + 1, now=NOW)
    assert [h.budget_name for h in other.holds] == ["everyone"]


@pytest.mark.django_db
def test_scopes_select_the_budgets_that_cover_a_request() -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:1", locality="cloud"
    )
    model = LLMModel.objects.create(provider=provider, name="m")
    make_budget("key-7", scope=Budget.Scope.API_KEY, api_key_id=7)
    make_budget("model-m", scope=Budget.Scope.MODEL, model=model)
    make_budget("off", enabled=False)

    both = budget_reserve(max_cost_usd=Decimal("0.01"), api_key_id=7, model_id=model.pk, now=NOW)
    key_only = budget_reserve(max_cost_usd=Decimal("0.01"), api_key_id=7, now=NOW)
    nobody = budget_reserve(max_cost_usd=Decimal("0.01"), api_key_id=8, now=NOW)

    assert sorted(h.budget_name for h in both.holds) == ["key-7", "model-m"]
    assert [h.budget_name for h in key_only.holds] == ["key-7"]
    assert nobody.holds == ()


@pytest.mark.django_db
def test_the_scope_must_name_exactly_its_target() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_budget("key-without-id", scope=Budget.Scope.API_KEY)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_budget("global-with-key", api_key_id=3)


@pytest.mark.django_db
def test_free_models_are_never_blocked_even_by_a_spent_budget() -> None:
    budget = make_budget(limit="0")

    reservation = budget_reserve(max_cost_usd=Decimal(0), now=NOW)

    assert reservation.holds == ()
    with pytest.raises(BudgetExceeded):
        budget_reserve(max_cost_usd=Decimal("0.00000001"), now=NOW)
    assert not BudgetPeriod.objects.filter(budget=budget, reserved_usd__gt=0).exists()


@pytest.mark.django_db
def test_an_unbounded_cost_is_refused_by_hard_budgets_and_tracked_by_soft_ones() -> None:
    make_budget("hard", limit="1000")
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(max_cost_usd=None, now=NOW)
    assert refused.value.reason == "the cost cannot be bounded"

    Budget.objects.filter(name="hard").update(hard_stop=False)
    reservation = budget_reserve(max_cost_usd=None, now=NOW)
    budget_settle(reservation=reservation, actual_cost_usd=Decimal("2.5"), now=NOW)
    assert BudgetPeriod.objects.get().spent_usd == Decimal("2.5")


@pytest.mark.django_db
def test_the_per_request_cap_refuses_a_single_dear_request() -> None:
    make_budget(limit="100", max_cost_per_request_usd=Decimal("0.50"))

    budget_reserve(max_cost_usd=Decimal("0.50"), now=NOW)
    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(max_cost_usd=Decimal("0.50000001"), now=NOW)

    assert "above 0.50000000 USD per request" in refused.value.reason


@pytest.mark.django_db
def test_reservations_round_up_so_they_never_undercount() -> None:
    make_budget(limit="1")

    reservation = budget_reserve(max_cost_usd=Decimal("0.000000825"), now=NOW)

    assert reservation.amount_usd == Decimal("0.00000083")
    assert BudgetPeriod.objects.get().reserved_usd == Decimal("0.00000083")


@pytest.mark.django_db
def test_an_unknown_actual_price_counts_the_whole_reservation_as_spent() -> None:
    make_budget(limit="1")
    reservation = budget_reserve(max_cost_usd=Decimal("0.40"), now=NOW)

    budget_settle(reservation=reservation, actual_cost_usd=None, now=NOW)

    period = BudgetPeriod.objects.get()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.40"), Decimal(0))


@pytest.mark.django_db
def test_unpriced_models_reserve_like_the_dearest_known_model() -> None:
    provider = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:1", locality="cloud"
    )
    LLMModel.objects.create(
        provider=provider,
        name="dear",
        input_price_per_mtok_usd=Decimal("3"),
        output_price_per_mtok_usd=Decimal("15"),
    )
    free = LLMModel.objects.create(
        provider=provider,
        name="free",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    unpriced = LLMModel.objects.create(provider=provider, name="new")

    assert request_max_cost_usd(
        model=unpriced, prompt_tokens=1000, max_output_tokens=2000
    ) == Decimal("0.033")
    assert request_max_cost_usd(model=free, prompt_tokens=1000, max_output_tokens=2000) == 0


@pytest.mark.django_db
def test_crossing_the_soft_share_records_one_alert_per_period() -> None:
    budget = make_budget(limit="1.00", soft_alert_share=Decimal("0.8"))

    for cost in ("0.79", "0.01", "0.05"):
        reservation = budget_reserve(max_cost_usd=Decimal("0.10"), now=NOW)
        budget_settle(reservation=reservation, actual_cost_usd=Decimal(cost), now=NOW)
        if cost == "0.79":
            assert not BudgetAlert.objects.exists()

    alert = BudgetAlert.objects.get()
    assert (alert.budget_id, alert.spent_usd, alert.limit_usd) == (
        budget.pk,
        Decimal("0.80"),
        Decimal("1.00"),
    )
    # The next month starts a fresh period, with room and without an alert.
    december = NOW + timedelta(days=20)
    reservation = budget_reserve(max_cost_usd=Decimal("0.90"), now=december)
    budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.90"), now=december)
    assert BudgetAlert.objects.count() == 2
    assert BudgetPeriod.objects.count() == 2


@pytest.mark.django_db
def test_stale_holds_of_dead_processes_are_released() -> None:
    make_budget(limit="1")
    old = budget_reserve(max_cost_usd=Decimal("0.25"), now=NOW)
    fresh = budget_reserve(max_cost_usd=Decimal("0.25"), now=NOW + timedelta(minutes=14))

    released = budget_reservations_expire(
        older_than=timedelta(minutes=10), now=NOW + timedelta(minutes=15)
    )

    assert released == 1
    assert BudgetPeriod.objects.get().reserved_usd == Decimal("0.25")
    # Settling the expired hold later changes nothing; the fresh one still settles.
    budget_settle(reservation=old, actual_cost_usd=Decimal("0.25"), now=NOW)
    budget_settle(reservation=fresh, actual_cost_usd=Decimal("0.20"), now=NOW)
    period = BudgetPeriod.objects.get()
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.20"), Decimal(0))


@pytest.mark.django_db
def test_a_stale_hold_whose_request_was_logged_is_settled_from_its_row() -> None:
    # Its settlement was lost (a Postgres crash in the flush window); the row was not.
    make_budget(limit="20")
    priced, unpriced, failed, running = (
        budget_reserve(max_cost_usd=Decimal(cost), now=NOW) for cost in ("1", "2", "3", "4")
    )
    # A request that fell back: its first model's hold was released, its second's settled;
    # both statements were lost. Only the last hold is settled from the row.
    fell_back = uuid.uuid4()
    first_model = budget_reserve(max_cost_usd=Decimal("5"), request_id=fell_back, now=NOW)
    second_model = budget_reserve(
        max_cost_usd=Decimal("1"), request_id=fell_back, now=NOW + timedelta(seconds=1)
    )
    for reservation, status, output, cost in (
        (priced, "success", 10, Decimal("0.4")),
        (unpriced, "partial", 3, None),
        (failed, "error", 0, None),
        (second_model, "success", 7, Decimal("0.3")),
    ):
        request_record(
            outcome=RequestOutcome(
                request_id=reservation.request_id,
                created_at=NOW,
                entry_point="openai",
                status=status,
                cost_state="reported" if cost is not None else "unknown_price",
                output_tokens=output,
                cost_usd=cost,
            )
        )

    assert budget_reservations_expire(older_than=timedelta(minutes=10), now=NOW + HOUR) == 6

    period = BudgetPeriod.objects.get()
    # 0.4 and 0.3 as logged, plus the whole 2 of a partial answer whose price is unknown.
    assert (period.spent_usd, period.reserved_usd) == (Decimal("2.7"), Decimal(0))
    states = {line.pk: (line.state, line.actual_usd) for line in BudgetReservation.objects.all()}
    closes = (priced, unpriced, failed, running, first_model, second_model)
    assert [states[r.holds[0].reservation_id] for r in closes] == [
        ("settled", Decimal("0.4")),
        ("settled", Decimal("2")),
        ("released", Decimal(0)),
        ("released", Decimal(0)),
        ("released", Decimal(0)),
        ("settled", Decimal("0.3")),
    ]


@pytest.mark.django_db
def test_editing_a_limit_applies_to_the_open_period() -> None:
    from routing.budgets import budget_limit_apply

    budget = make_budget(limit="0.10")
    budget_reserve(max_cost_usd=Decimal("0.10"), now=NOW)
    budget.limit_usd = Decimal("0.20")
    budget.save()

    assert budget_limit_apply(budget=budget, now=NOW) == 1
    budget_reserve(max_cost_usd=Decimal("0.10"), now=NOW)
    assert BudgetPeriod.objects.get().reserved_usd == Decimal("0.20")


# --- concurrency ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("budgets", ["one budget", "with a roomier key budget"])
def test_64_concurrent_requests_admit_exactly_the_10_that_fit(budgets: str) -> None:
    budget = make_budget(limit="1.00")
    if budgets != "one budget":
        make_budget("key-1", limit="5.00", scope=Budget.Scope.API_KEY, api_key_id=1)
    start = threading.Event()
    # Holds are kept until every request has tried, so a released hold cannot make room
    # for a later request and the count of admissions means what it says.
    all_tried = threading.Event()
    tried = iter(range(1, 65))
    tried_lock = threading.Lock()

    def one_request(index: int) -> str:
        start.wait()
        try:
            reservation = budget_reserve(max_cost_usd=Decimal("0.10"), api_key_id=1)
        except BudgetExceeded as refused:
            return f"refused:{refused.budget_name}"
        finally:
            connection.close()
            with tried_lock:
                if next(tried) == 64:
                    all_tried.set()
        all_tried.wait(timeout=60)
        # Admitted requests end in the three ways a real one can.
        try:
            if index % 3 == 0:
                budget_release(reservation=reservation)
                return "failed"
            budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.07"))
            return "settled"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=64) as pool:
        futures = [pool.submit(one_request, i) for i in range(64)]
        start.set()
        outcomes = [f.result() for f in futures]

    admitted = [o for o in outcomes if not o.startswith("refused")]
    assert len(admitted) == 10
    assert outcomes.count("refused:monthly") == 54
    period = period_of(budget)
    assert period.reserved_usd == Decimal(0)
    assert period.spent_usd == Decimal("0.07") * admitted.count("settled")
    assert period.spent_usd <= budget.limit_usd
    assert not BudgetReservation.objects.filter(state="held").exists()
    assert BudgetReservation.objects.count() == (10 if budgets == "one budget" else 20)
    assert not BudgetPeriod.objects.filter(reserved_usd__gt=0).exists()


@pytest.fixture
async def async_db_thread_closed() -> AsyncIterator[None]:
    """The ORM's async bridge keeps one thread with its own connection; give it back."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_db_thread_closed")
async def test_cancelled_and_failed_requests_leave_no_hold() -> None:
    budget = await Budget.objects.acreate(name="monthly", limit_usd=Decimal("1.00"))
    upstream_started = asyncio.Event()

    async def cancelled_request() -> None:
        async with budget_guard(max_cost_usd=Decimal("0.40")):
            upstream_started.set()
            await asyncio.sleep(3600)

    async def failing_request() -> None:
        async with budget_guard(max_cost_usd=Decimal("0.40")):
            raise ConnectionResetError("upstream cut the stream")

    async def finished_request() -> None:
        async with budget_guard(max_cost_usd=Decimal("0.40")) as spend:
            spend.record(Decimal("0.11"))

    task = asyncio.create_task(cancelled_request())
    await upstream_started.wait()
    held = await BudgetPeriod.objects.aget(budget=budget)
    assert held.reserved_usd == Decimal("0.40")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionResetError):
        await failing_request()
    await finished_request()

    period = await BudgetPeriod.objects.aget(budget=budget)
    assert (period.spent_usd, period.reserved_usd) == (Decimal("0.11"), Decimal(0))
    states = sorted([r.state async for r in BudgetReservation.objects.all()])
    assert states == ["released", "released", "settled"]


@pytest.mark.django_db
def test_a_budget_added_while_admission_is_warm_covers_the_next_request() -> None:
    first = make_budget("first", limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)

    second = make_budget("second", limit="1")
    reservation = budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)

    assert sorted(h.budget_name for h in reservation.holds) == ["first", "second"]
    assert [period_of(b).reserved_usd for b in (first, second)] == [Decimal("0.1")] * 2


@pytest.mark.django_db
def test_a_disabled_budget_stops_covering_requests_at_once() -> None:
    budget = make_budget(limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)

    budget.enabled = False
    budget.save()

    assert budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW).holds == ()


@pytest.mark.django_db
def test_a_remembered_period_that_vanished_is_looked_up_again_not_refused() -> None:
    budget = make_budget(limit="1")
    budget_settle(
        reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW),
        actual_cost_usd=Decimal("0.05"),
        now=NOW,
    )
    vanished = period_of(budget).pk
    # Behind admission's back: no model signal tells this process.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM routing_budgetreservation")
        cursor.execute("DELETE FROM routing_budgetperiod WHERE id = %s", [vanished])

    reservation = budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)

    period = period_of(budget)
    assert period.pk != vanished
    assert [h.period_id for h in reservation.holds] == [period.pk]
    assert (period.spent_usd, period.reserved_usd) == (Decimal(0), Decimal("0.1"))


@pytest.mark.django_db
def test_a_refusal_on_remembered_facts_is_confirmed_on_fresh_ones() -> None:
    budget = make_budget(limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)
    # Another process lowered the open period's limit (limits are never remembered).
    BudgetPeriod.objects.filter(budget=budget).update(limit_usd=Decimal("0.05"))

    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)

    assert refused.value.budget_name == "monthly"
    assert period_of(budget).reserved_usd == Decimal(0)
    assert BudgetReservation.objects.count() == 1  # the first, released


@pytest.mark.django_db
def test_the_hot_path_costs_a_few_statements(django_assert_num_queries) -> None:
    make_budget(limit="1")
    budget_release(reservation=budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW), now=NOW)

    # One budget, warm: the budgets covering the request and their periods are remembered, so
    # admission is the hold alone, one statement; settling is one more.
    with django_assert_num_queries(1):
        reservation = budget_reserve(max_cost_usd=Decimal("0.1"), now=NOW)
    with django_assert_num_queries(1):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.01"), now=NOW)
    # Several budgets: still one statement to hold on all of them, and one to settle.
    make_budget("key-1", limit="1", scope=Budget.Scope.API_KEY, api_key_id=1)
    budget_release(
        reservation=budget_reserve(max_cost_usd=Decimal("0.1"), api_key_id=1, now=NOW), now=NOW
    )
    with django_assert_num_queries(1):
        reservation = budget_reserve(max_cost_usd=Decimal("0.1"), api_key_id=1, now=NOW)
    assert len(reservation.holds) == 2
    with django_assert_num_queries(1):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.01"), now=NOW)
    empty = Reservation(request_id=uuid.uuid4(), amount_usd=Decimal(0), holds=())
    with django_assert_num_queries(0):
        budget_settle(reservation=empty, actual_cost_usd=Decimal(0))


@pytest.mark.django_db
def test_a_group_of_closes_settles_and_releases_each_in_one_statement(
    django_assert_num_queries,
) -> None:
    shared = make_budget("shared", limit="8", soft_alert_share=Decimal("0.5"))
    key = make_budget("key-3", limit="10", scope=Budget.Scope.API_KEY, api_key_id=3)
    spent = budget_reserve(max_cost_usd=Decimal("3"), api_key_id=3, now=NOW)
    unpriced = budget_reserve(max_cost_usd=Decimal("2.5"), now=NOW)
    failed = budget_reserve(max_cost_usd=Decimal("1"), api_key_id=3, now=NOW)
    closes = [
        BudgetClose.settled(spent, Decimal("2.123456789")),
        BudgetClose.settled(unpriced, None),
        BudgetClose.released(failed),
        BudgetClose.released(Reservation(uuid.uuid4(), Decimal(0), ())),
    ]

    # One statement for the whole group (claims, period locks, spending); the soft alert the
    # group crosses is recorded once after it (its check, read and insert), though two of the
    # closes that crossed it spent something.
    with django_assert_num_queries(4):
        budgets_close(closes, now=NOW)
    budgets_close(closes, now=NOW)  # closing again changes nothing

    shared_period, key_period = period_of(shared), period_of(key)
    assert (shared_period.spent_usd, shared_period.reserved_usd) == (Decimal("4.62345679"), 0)
    assert (key_period.spent_usd, key_period.reserved_usd) == (Decimal("2.12345679"), 0)
    states = sorted(BudgetReservation.objects.values_list("period_id", "state", "actual_usd"))
    assert states == sorted(
        [
            (shared_period.pk, "settled", Decimal("2.12345679")),
            (key_period.pk, "settled", Decimal("2.12345679")),
            (shared_period.pk, "settled", Decimal("2.5")),
            (shared_period.pk, "released", Decimal(0)),
            (key_period.pk, "released", Decimal(0)),
        ]
    )
    assert list(BudgetAlert.objects.values_list("budget_id", "spent_usd")) == [
        (shared.pk, Decimal("4.62345679"))
    ]


@pytest.mark.django_db(transaction=True)
def test_holds_and_settlements_relax_only_their_own_commit() -> None:
    make_budget(limit="10")

    def commit_mode() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    # Alone, each is its own transaction: the setting ends with it.
    held = budget_reserve(max_cost_usd=Decimal("1"), now=NOW)
    assert commit_mode() == "on"
    budgets_close([BudgetClose.settled(held, Decimal("0.5"))], now=NOW)
    assert commit_mode() == "on"
    # Inside a caller's transaction they leave it alone, or the caller's other writes would
    # lose their synchronous commit too (the setting would last until the caller commits).
    with transaction.atomic():
        held = budget_reserve(max_cost_usd=Decimal("1"), now=NOW)
        assert commit_mode() == "on"
        budgets_close([BudgetClose.released(held)], now=NOW)
        assert commit_mode() == "on"
    # A group's one statement likewise.
    pair = [budget_reserve(max_cost_usd=Decimal("1"), now=NOW) for _ in range(2)]
    budgets_close([BudgetClose.settled(pair[0], Decimal("0.25")), BudgetClose.released(pair[1])])
    assert commit_mode() == "on"
    with transaction.atomic():
        pair = [budget_reserve(max_cost_usd=Decimal("1"), now=NOW) for _ in range(2)]
        budgets_close([BudgetClose.settled(held, Decimal("0.25")) for held in pair], now=NOW)
        assert commit_mode() == "on"
    period = period_of(Budget.objects.get())
    assert (period.spent_usd, period.reserved_usd) == (Decimal("1.25"), Decimal(0))


@pytest.mark.django_db
def test_the_admin_shows_current_spend_and_holds_and_applies_edited_limits(admin_client) -> None:
    budget = make_budget(limit="5.00")
    budget_settle(
        reservation=budget_reserve(max_cost_usd=Decimal("1.25")), actual_cost_usd=Decimal("0.75")
    )
    budget_reserve(max_cost_usd=Decimal("2.00"))

    page = admin_client.get("/admin/routing/budget/").content.decode()
    assert "0.75000000" in page
    assert "2.00000000" in page

    response = admin_client.post(
        f"/admin/routing/budget/{budget.pk}/change/",
        {
            "name": "monthly",
            "scope": "global",
            "period": "month",
            "limit_usd": "2.50",
            "soft_alert_share": "0.8",
            "hard_stop": "on",
            "enabled": "on",
            "periods-TOTAL_FORMS": "1",
            "periods-INITIAL_FORMS": "1",
            "periods-MIN_NUM_FORMS": "0",
            "periods-MAX_NUM_FORMS": "0",
            "periods-0-id": str(period_of(budget).pk),
            "periods-0-budget": str(budget.pk),
        },
    )
    assert response.status_code == 302
    assert period_of(budget).limit_usd == Decimal("2.50")
    with pytest.raises(BudgetExceeded):
        budget_reserve(max_cost_usd=Decimal("0.00000001"))
