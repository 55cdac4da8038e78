"""Budget admission: what is held, what is refused, and under concurrency never past a limit
(routing.budgets.reserve)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from providers.models import LLMModel, Provider
from routing.budgets.close import (
    budget_release,
    budget_settle,
)
from routing.budgets.reserve import budget_reserve
from routing.budgets.values import BudgetExceeded
from routing.config.cache import routing_config_get
from routing.models import Budget, BudgetPeriod, BudgetReservation
from routing.pipeline.ledger import max_cost
from tests.routing.budget_support import NOW, make_budget, period_of


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
    LLMModel.objects.create(
        provider=provider,
        name="free",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    LLMModel.objects.create(provider=provider, name="new")
    config = routing_config_get()
    unpriced, free = (config.registry.by_ref[f"cloud:{name}"] for name in ("new", "free"))

    # What the gateway holds for a request (routing.pipeline.admission.admit_model): its
    # prompt tokens, and its max_tokens of answer.
    assert max_cost(unpriced, config, 1000, 2000) == Decimal("0.033")
    assert max_cost(free, config, 1000, 2000) == 0


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
