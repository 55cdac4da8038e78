"""The analytics budget page and API over the budgets routing keeps (its registered source)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from analytics.budgets import budgets_available
from analytics.scoping import key_owner_resolver_register, key_owner_resolver_unregister
from routing.budgets.close import budget_settle
from routing.budgets.reserve import budget_reserve
from routing.models import Budget, BudgetAlert


@pytest.fixture
def budgets(db) -> dict[str, Any]:
    users = get_user_model().objects
    staff = users.create_user(username="boss", password="x", is_staff=True)
    bob = users.create_user(username="bob", password="x")
    Budget.objects.create(name="team", limit_usd=Decimal("10.00"), soft_alert_share=Decimal("0.8"))
    Budget.objects.create(name="bob", scope="user", user=bob, limit_usd=Decimal("2.00"))
    Budget.objects.create(
        name="key-42", scope="api_key", api_key_id=42, limit_usd=Decimal("1.00"), hard_stop=False
    )
    # Through the request path's services: 8.50 USD spent (crosses the 80 % alert), 0.25 held.
    spent = budget_reserve(max_cost_usd=Decimal("9.00"))
    budget_settle(reservation=spent, actual_cost_usd=Decimal("8.50"))
    budget_reserve(max_cost_usd=Decimal("0.25"))
    return {"staff": staff, "bob": bob}


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_routing_registers_its_budget_source() -> None:
    assert budgets_available()


@pytest.mark.django_db
def test_staff_see_every_budget_with_spend_reserved_limit_and_alerts(budgets) -> None:
    client = _client(budgets["staff"])
    alert = BudgetAlert.objects.get(budget__name="team")
    assert (alert.spent_usd, alert.limit_usd) == (Decimal("8.50"), Decimal("10.00"))

    api = client.get("/reports/api/budgets").json()

    assert api["available"] is True
    assert api["budgets"] == [
        {
            "name": "bob",
            "scope": "user",
            "period": "month",
            "limit_usd": "2.00000000",
            "spent_usd": "0",
            "reserved_usd": "0",
            "used_share": "0.0000",
            "soft_alert_crossed": False,
            "alerted_at": None,
            "exceeded": False,
        },
        {
            "name": "key-42",
            "scope": "api_key",
            "period": "month",
            "limit_usd": "1.00000000",
            "spent_usd": "0",
            "reserved_usd": "0",
            "used_share": "0.0000",
            "soft_alert_crossed": False,
            "alerted_at": None,
            "exceeded": False,
        },
        {
            "name": "team",
            "scope": "global",
            "period": "month",
            "limit_usd": "10.00000000",
            "spent_usd": "8.50000000",
            "reserved_usd": "0.25000000",
            "used_share": "0.8500",
            "soft_alert_crossed": True,
            "alerted_at": alert.created_at.isoformat(),
            "exceeded": False,
        },
    ]

    page = client.get("/reports/budgets/").content.decode()
    row = re.search(r'<tr data-budget="team">.*?</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
    assert cells[:6] == ["team", "global", "month", "$8.50", "$0.25", "$10.00"]
    assert '<span class="unknown">alert crossed</span>' in row.group(0)
    assert 'data-budget="bob"' in page and 'data-budget="key-42"' in page


@pytest.mark.django_db
def test_a_user_sees_the_budgets_that_apply_to_their_requests(budgets) -> None:
    client = _client(budgets["bob"])

    names = [b["name"] for b in client.get("/reports/api/budgets").json()["budgets"]]
    assert names == ["bob", "team"]

    def keys_of(user_id: int) -> tuple[int, ...]:
        return (42,) if user_id == budgets["bob"].pk else ()

    key_owner_resolver_register(keys_of)
    try:
        names = [b["name"] for b in client.get("/reports/api/budgets").json()["budgets"]]
    finally:
        key_owner_resolver_unregister(keys_of)
    assert names == ["bob", "key-42", "team"]
    assert Client().get("/reports/api/budgets").status_code == 401
