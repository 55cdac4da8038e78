"""Budgets in configuration as code: import, export, validation, idempotence, atomicity."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from providers.models import LLMModel, Provider
from routing.config import ConfigFileError, config_apply, config_export
from routing.models import Budget, BudgetPeriod, RoutingPolicy
from tests.routing.test_config_io import GOOD

BUDGETS = """\
budgets:
  - name: team
    period: month
    limit_usd: 100.00
    soft_alert_share: 0.75
    max_cost_per_request_usd: 0.50
  - name: ann-daily
    scope: user
    user: ann
    period: day
    limit_usd: 2
    hard_stop: false
  - name: key-7
    scope: api_key
    api_key_id: 7
    period: week
    limit_usd: 10
    enabled: false
  - name: premium-cap
    scope: model
    model: openai:gpt-4o
    limit_usd: 25.5
"""
TEXT = GOOD + BUDGETS
FIRST = GOOD.count("\n")  # line n of BUDGETS is line FIRST + n of TEXT


def at(line_in_budgets: int) -> str:
    return f"line {FIRST + line_in_budgets}"


@pytest.fixture
def ann(db):
    return get_user_model().objects.create_user(username="ann")


@pytest.mark.django_db
def test_budgets_import_with_their_targets(ann) -> None:
    report = config_apply(text=TEXT)

    assert report.created[-4:] == [
        "budget team",
        "budget ann-daily",
        "budget key-7",
        "budget premium-cap",
    ]
    rows = {
        b.name: (
            b.scope,
            b.api_key_id,
            b.user_id,
            b.model.name if b.model else None,
            b.period,
            b.limit_usd,
            b.soft_alert_share,
            b.hard_stop,
            b.max_cost_per_request_usd,
            b.enabled,
        )
        for b in Budget.objects.select_related("model")
    }
    d = Decimal
    assert rows == {
        "team": ("global", None, None, None, "month", d(100), d("0.75"), True, d("0.5"), True),
        "ann-daily": ("user", None, ann.pk, None, "day", d(2), d("0.8"), False, None, True),
        "key-7": ("api_key", 7, None, None, "week", d(10), d("0.8"), True, None, False),
        "premium-cap": (
            "model",
            None,
            None,
            "gpt-4o",
            "month",
            d("25.5"),
            d("0.8"),
            True,
            None,
            True,
        ),
    }


@pytest.mark.django_db
def test_budget_import_is_idempotent_and_round_trips(ann) -> None:
    config_apply(text=TEXT)
    ids = dict(Budget.objects.values_list("name", "id"))

    again = config_apply(text=TEXT)

    assert again.created == [] and again.updated == []
    assert len(again.unchanged) == 10
    assert dict(Budget.objects.values_list("name", "id")) == ids

    exported = config_export()
    assert "budgets:\n- name: ann-daily\n  scope: user\n  user: ann\n  period: day\n" in exported
    assert "  model: openai:gpt-4o\n  period: month\n  limit_usd: '25.5'\n" in exported
    for model in (Budget, RoutingPolicy, LLMModel, Provider):
        model.objects.all().delete()
    config_apply(text=exported)
    assert config_export() == exported


@pytest.mark.django_db
def test_a_changed_limit_reaches_the_open_period_and_a_changed_period_waits(ann) -> None:
    config_apply(text=TEXT)
    team = Budget.objects.get(name="team")
    now = timezone.now()
    BudgetPeriod.objects.create(
        budget=team,
        starts_at=now - timedelta(days=3),
        ends_at=now + timedelta(days=3),
        limit_usd=team.limit_usd,
        spent_usd=Decimal("40"),
    )

    report = config_apply(
        text=TEXT.replace("limit_usd: 100.00", "limit_usd: 60").replace(
            "    period: month\n    limit_usd: 60", "    period: week\n    limit_usd: 60"
        )
    )

    assert report.updated == ["budget team"]
    team.refresh_from_db()
    assert (team.period, team.limit_usd) == ("week", Decimal(60))
    period = BudgetPeriod.objects.get(budget=team)
    assert (period.limit_usd, period.spent_usd) == (Decimal(60), Decimal(40))
    assert period.ends_at == now + timedelta(days=3)


BAD = [
    (
        BUDGETS.replace("    scope: user\n    user: ann\n", "    scope: user\n"),
        [f"{at(7)}: budget 'ann-daily': a user budget needs 'user'"],
    ),
    (
        BUDGETS.replace("  - name: team\n", "  - name: team\n    api_key_id: 3\n"),
        [f"{at(3)}: budget 'team': 'api_key_id' does not belong to a global budget"],
    ),
    (
        BUDGETS.replace("period: week", "period: fortnight"),
        [f"{at(16)}: budget 'key-7' period: 'fortnight' is not one of day, week, month"],
    ),
    (
        BUDGETS.replace("limit_usd: 10\n", "limit_usd: lots\n"),
        [f"{at(17)}: budget 'key-7' limit_usd must be a number; got 'lots'"],
    ),
    (
        BUDGETS.replace("limit_usd: 10\n", "limit_usd: null\n"),
        [f"{at(17)}: budget 'key-7' limit_usd must be a number"],
    ),
    (
        BUDGETS.replace("limit_usd: 2\n", "limit_usd: -2\n"),
        [f"{at(11)}: budget 'ann-daily' limit_usd must be >= 0"],
    ),
    (
        BUDGETS.replace("soft_alert_share: 0.75", "soft_alert_share: 1.5"),
        [
            f"{at(5)}: budget 'team' soft_alert_share must be between 0 and 1 "
            "with at most 3 decimals"
        ],
    ),
    (
        BUDGETS.replace("soft_alert_share: 0.75", "soft_alert_share: null"),
        [f"{at(5)}: budget 'team' soft_alert_share must be a number"],
    ),
    (
        BUDGETS.replace("model: openai:gpt-4o", "model: gpt-4o"),
        [f"{at(21)}: budget 'premium-cap': model 'gpt-4o' must be written provider:model"],
    ),
    (
        BUDGETS.replace("api_key_id: 7", "api_key_id: seven"),
        [f"{at(15)}: budget 'key-7' api_key_id must be an integer; got 'seven'"],
    ),
    (
        BUDGETS.replace("name: key-7", "name: team"),
        [f"{at(13)}: budget 'team' is listed twice"],
    ),
    (
        BUDGETS.replace("name: premium-cap", "name: premium cap"),
        [f"{at(19)}: budget 'premium cap': a name is letters, digits, '-' and '_' only"],
    ),
    (
        BUDGETS.replace("    hard_stop: false\n", "    hard_stop: false\n    ceiling: 3\n"),
        [
            f"{at(13)}: budget: unknown key 'ceiling'; expected one of name, limit_usd, scope, "
            "api_key_id, user, model, period, soft_alert_share, hard_stop, "
            "max_cost_per_request_usd, enabled"
        ],
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("budgets", "errors"), BAD, ids=range(len(BAD)))
def test_bad_budgets_are_rejected_with_lines_and_nothing_applied(ann, budgets, errors) -> None:
    with pytest.raises(ConfigFileError) as raised:
        config_apply(text=GOOD + budgets)

    assert raised.value.errors == errors
    assert not Provider.objects.exists()
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_unknown_user_or_model_fails_late_and_rolls_everything_back() -> None:
    text = TEXT.replace("model: openai:gpt-4o\n", "model: openai:gpt-9\n")

    with pytest.raises(ConfigFileError) as raised:
        config_apply(text=text)

    assert raised.value.errors == [
        f"{at(9)}: unknown user 'ann'",
        f"{at(21)}: unknown model 'openai:gpt-9' (not in this file nor the database)",
    ]
    assert not Provider.objects.exists()
    assert not RoutingPolicy.objects.exists()
    assert not Budget.objects.exists()
