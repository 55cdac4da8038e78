"""Synthetic, clearly labelled (`is_demo`) request history for a fresh install and for benchmarks.

Rows go in with Postgres COPY (psycopg 3) when available, else in bulk inserts. Costs are
computed in integer micro-dollars per million tokens, so no float ever touches money.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection

from analytics.models import DailyModelRollup, DailyRollup, RequestLog
from analytics.rollups import day_start
from providers.models import LLMModel

DEMO_USERNAMES = ("demo-ana", "demo-ben", "demo-chen")
DEMO_KEY_IDS = (9001, 9002, 9003)
TASK_WEIGHTS = {
    "general": 25,
    "code": 20,
    "simple": 15,
    "explanation": 10,
    "analysis": 8,
    "documentation": 7,
    "research": 6,
    "creative": 5,
    "testing": 3,
    "long_context": 1,
}
COMPLEXITY_WEIGHTS = {"simple": 50, "moderate": 35, "complex": 15}
COLUMNS = (
    "request_id",
    "created_at",
    "entry_point",
    "user_id",
    "api_key_id",
    "session_id",
    "task_type",
    "complexity",
    "requested_model",
    "model_id",
    "model_name",
    "provider_name",
    "locality",
    "status",
    "error_code",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "cost_state",
    "baseline_cost_usd",
    "latency_ms",
    "time_to_first_token_ms",
    "attempts",
    "fallbacks",
    "cache_hit",
    "decision_trace",
    "is_demo",
)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class _Model:
    id: int
    name: str
    provider: str
    locality: str
    tier: str
    input_micro: int | None
    output_micro: int | None
    weight: int
    base_latency_ms: int


def _micro(price: Decimal | None) -> int | None:
    return None if price is None else int(price * 1_000_000)


def _usd(pico: int) -> str:
    """Money in 1e-12 USD (tokens x micro-USD per Mtok) as an exact decimal string."""
    return f"{pico // 10**12}.{pico % 10**12:012d}"


def _models() -> tuple[list[_Model], _Model | None]:
    weights = {"small_local": 30, "large_local": 10, "standard": 35, "premium": 25}
    latency = {"small_local": 400, "large_local": 900, "standard": 700, "premium": 1400}
    models = [
        _Model(
            id=m.pk,
            name=m.name,
            provider=m.provider.name,
            locality=m.provider.locality,
            tier=m.tier,
            input_micro=_micro(m.input_price_per_mtok_usd),
            output_micro=_micro(m.output_price_per_mtok_usd),
            weight=weights.get(m.tier, 10),
            base_latency_ms=latency.get(m.tier, 800),
        )
        for m in LLMModel.objects.select_related("provider").order_by("pk")
    ]
    baseline = next(
        (
            m
            for m, row in zip(models, LLMModel.objects.order_by("pk"), strict=True)
            if row.is_baseline
        ),
        None,
    )
    return models, baseline


def demo_users() -> list[int]:
    users = []
    for name in DEMO_USERNAMES:
        user, created = get_user_model().objects.get_or_create(username=name)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        users.append(user.pk)
    return users


def demo_rows(*, count: int, days: int, today: date, seed: int) -> Iterator[tuple[object, ...]]:
    """Reads models and users now; the rows themselves are generated lazily.

    The reads must happen before COPY starts: the connection can run nothing else during it.
    """
    models, baseline = _models()
    if not models:
        raise ValueError("no models registered; run `manage.py bootstrap_local` first")
    users = demo_users()
    return _generate(models, baseline, users, count=count, days=days, today=today, seed=seed)


def _generate(
    models: list[_Model],
    baseline: _Model | None,
    users: list[int],
    *,
    count: int,
    days: int,
    today: date,
    seed: int,
) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed)
    tasks, task_w = list(TASK_WEIGHTS), list(TASK_WEIGHTS.values())
    cx, cx_w = list(COMPLEXITY_WEIGHTS), list(COMPLEXITY_WEIGHTS.values())
    model_w = [m.weight for m in models]
    first = day_start(today - timedelta(days=days - 1))
    span_s = days * 86400
    # Rows in time order, as a live system writes them.
    offsets = sorted(rng.random() * span_s for _ in range(count))
    for offset in offsets:
        created = first + timedelta(seconds=offset)
        model = rng.choices(models, model_w)[0]
        task = rng.choices(tasks, task_w)[0]
        complexity = "simple" if task == "simple" else rng.choices(cx, cx_w)[0]
        who = rng.randrange(len(users))
        via_key = rng.random() < 0.4
        roll = rng.random()
        status = "success"
        if roll < 0.03:
            status = "error"
        elif roll < 0.04:
            status = "rate_limited"
        elif roll < 0.045:
            status = "partial"
        called = status in ("success", "partial", "error")
        fallbacks = 1 if called and rng.random() < 0.06 else 0
        cache_hit = status == "success" and rng.random() < 0.08
        tokens_in = rng.randint(40, 3000) if called else 0
        tokens_out = rng.randint(10, 1200) if status in ("success", "partial") else 0
        cached = tokens_in // 2 if cache_hit else 0
        if not called:
            cost, state, base = None, "none", None
        elif model.input_micro is None or model.output_micro is None:
            cost, state = None, "unknown_price"
            base = None
        else:
            state = "estimated" if rng.random() < 0.05 else "reported"
            pico = (
                0 if cache_hit else tokens_in * model.input_micro + tokens_out * model.output_micro
            )
            cost = _usd(pico)
            base = None
        if (
            called
            and baseline
            and baseline.input_micro is not None
            and baseline.output_micro is not None
        ):
            base = _usd(tokens_in * baseline.input_micro + tokens_out * baseline.output_micro)
        latency = (
            0
            if not called
            else 5
            if cache_hit
            else int(rng.lognormvariate(0, 0.5) * model.base_latency_ms) * (1 + fallbacks)
        )
        ttft = (latency // 4) if status == "success" else None
        yield (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            created,
            "chat" if not via_key else "openai",
            users[who],
            DEMO_KEY_IDS[who] if via_key else None,
            "",
            task,
            complexity,
            "",
            model.id,
            model.name,
            model.provider,
            model.locality,
            status,
            "" if status == "success" else status,
            tokens_in,
            tokens_out,
            cached,
            cost,
            state,
            base,
            latency,
            ttft,
            (1 + fallbacks) if called else 0,
            fallbacks,
            cache_hit,
            "{}",
            True,
        )


def demo_insert(rows: Iterator[tuple[object, ...]], *, progress: Progress) -> int:
    written = 0
    if connection.vendor == "postgresql":
        copy_sql = f"COPY {RequestLog._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
                if written % 10_000 == 0:
                    progress(written)
    else:
        batch: list[RequestLog] = []
        for row in rows:
            values = dict(zip(COLUMNS, row, strict=True))
            values["decision_trace"] = {}
            batch.append(RequestLog(**values))
            if len(batch) == 5000:
                RequestLog.objects.bulk_create(batch)
                written += len(batch)
                batch = []
                progress(written)
        RequestLog.objects.bulk_create(batch)
        written += len(batch)
    progress(written)
    return written


def demo_wipe(*, batch_size: int = 50_000) -> int:
    """Delete demo rows (bounded batches), their rollups and the demo users."""
    deleted = 0
    while True:
        ids = list(
            RequestLog.objects.filter(is_demo=True).values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        RequestLog.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    # Demo rows carry their own rollup rows (is_demo is a rollup dimension), so these go whole.
    DailyRollup.objects.filter(is_demo=True).delete()
    DailyModelRollup.objects.filter(is_demo=True).delete()
    get_user_model().objects.filter(username__in=DEMO_USERNAMES).delete()
    return deleted
