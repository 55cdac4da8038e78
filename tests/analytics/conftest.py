"""A small hand-built request log whose every total is worked out by hand in the tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from analytics.outcome import RequestOutcome
from analytics.services import request_record
from providers.models import LLMModel, Provider

DAY1 = date(2026, 3, 10)
DAY2 = date(2026, 3, 11)


@dataclass(frozen=True)
class Log:
    staff: User
    ana: User
    ben: User
    premium: LLMModel
    mini: LLMModel
    local: LLMModel


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def outcome(**fields: object) -> RequestOutcome:
    base: dict[str, object] = {
        "entry_point": "chat",
        "status": "success",
        "cost_state": "reported",
        "attempts": 1,
    }
    base.update(fields)
    return RequestOutcome(**base)  # type: ignore[arg-type]


@pytest.fixture
def log(db: None) -> Log:
    return log_build()


def log_build() -> Log:
    users = User.objects
    staff = users.create_user("boss", is_staff=True)
    ana = users.create_user("ana")
    ben = users.create_user("ben")
    cloud = Provider.objects.create(
        name="openai", kind="openai", base_url="https://x.test/v1", locality="cloud"
    )
    home = Provider.objects.create(
        name="home", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", locality="local"
    )
    premium = LLMModel.objects.create(
        provider=cloud,
        name="gpt-4o",
        display_name="GPT-4o",
        tier="premium",
        is_baseline=True,
        input_price_per_mtok_usd=Decimal("2.50"),
        output_price_per_mtok_usd=Decimal("10.00"),
    )
    mini = LLMModel.objects.create(
        provider=cloud,
        name="gpt-4o-mini",
        display_name="GPT-4o mini",
        tier="standard",
        input_price_per_mtok_usd=Decimal("0.15"),
        output_price_per_mtok_usd=Decimal("0.60"),
    )
    local = LLMModel.objects.create(
        provider=home,
        name="smol",
        display_name="Smol local",
        tier="small_local",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    cloud_fields = {"provider_name": "openai", "locality": "cloud"}
    rows = [
        # 1: premium, simple, exact baseline
        outcome(
            created_at=at(DAY1, 9),
            user_id=ana.pk,
            task_type="code",
            complexity="simple",
            model_id=premium.pk,
            model_name="gpt-4o",
            **cloud_fields,
            input_tokens=1000,
            output_tokens=500,
            cost_usd=Decimal("0.0075"),
            baseline_cost_usd=Decimal("0.0075"),
            latency_ms=1200,
            time_to_first_token_ms=300,
        ),
        # 2: standard after one fallback
        outcome(
            created_at=at(DAY1, 10),
            user_id=ana.pk,
            task_type="general",
            complexity="moderate",
            model_id=mini.pk,
            model_name="gpt-4o-mini",
            **cloud_fields,
            input_tokens=2000,
            output_tokens=1000,
            cost_usd=Decimal("0.0009"),
            baseline_cost_usd=Decimal("0.015"),
            latency_ms=400,
            time_to_first_token_ms=100,
            attempts=2,
            fallbacks=1,
        ),
        # 3: free local model, by ben
        outcome(
            created_at=at(DAY1, 11),
            user_id=ben.pk,
            task_type="simple",
            complexity="simple",
            model_id=local.pk,
            model_name="smol",
            provider_name="home",
            locality="local",
            input_tokens=500,
            output_tokens=200,
            cost_usd=Decimal(0),
            baseline_cost_usd=Decimal("0.00325"),
            latency_ms=80,
            time_to_first_token_ms=20,
        ),
        # 4: cache hit through ben's API key
        outcome(
            created_at=at(DAY1, 12),
            user_id=ben.pk,
            api_key_id=77,
            entry_point="openai",
            task_type="general",
            complexity="moderate",
            model_id=mini.pk,
            model_name="gpt-4o-mini",
            **cloud_fields,
            input_tokens=2000,
            output_tokens=1000,
            cached_tokens=2000,
            cost_usd=Decimal(0),
            baseline_cost_usd=Decimal("0.015"),
            latency_ms=5,
            time_to_first_token_ms=5,
            cache_hit=True,
            attempts=0,
        ),
        # 5: a model without a price: cost unknown, never $0
        outcome(
            created_at=at(DAY1, 13),
            user_id=ana.pk,
            task_type="code",
            complexity="complex",
            model_name="mystery",
            **cloud_fields,
            input_tokens=1000,
            output_tokens=500,
            cost_usd=None,
            cost_state="unknown_price",
            baseline_cost_usd=Decimal("0.0075"),
            latency_ms=3000,
            time_to_first_token_ms=900,
        ),
        # 6: a failure before any token
        outcome(
            created_at=at(DAY1, 14),
            user_id=ana.pk,
            task_type="code",
            complexity="complex",
            model_id=premium.pk,
            model_name="gpt-4o",
            **cloud_fields,
            status="error",
            error_code="upstream_5xx",
            cost_state="none",
            latency_ms=0,
        ),
        # 7: next day, estimated usage
        outcome(
            created_at=at(DAY2, 9),
            user_id=ben.pk,
            task_type="general",
            complexity="moderate",
            model_id=mini.pk,
            model_name="gpt-4o-mini",
            **cloud_fields,
            input_tokens=2000,
            output_tokens=1000,
            cost_usd=Decimal("0.0009"),
            cost_state="estimated",
            baseline_cost_usd=Decimal("0.015"),
            latency_ms=600,
            time_to_first_token_ms=150,
        ),
    ]
    for row in rows:
        request_record(outcome=row)
    return Log(staff=staff, ana=ana, ben=ben, premium=premium, mini=mini, local=local)
