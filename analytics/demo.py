"""Synthetic, clearly labelled (`is_demo`) request history for a fresh install and for benchmarks.

Rows are generated as COPY text and go in with Postgres COPY (psycopg 3) when available, else in
bulk inserts. Costs are computed in integer micro-dollars per million tokens, so no float ever
touches money.
"""

from __future__ import annotations

import random
import uuid
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection

from analytics.models import DailyModelRollup, DailyRollup, MonthlyModelRollup, RequestLog
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
CHUNK_ROWS = 10_000
COPY_STATEMENT_ROWS = 500_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC).date()
UUID7_BITS = (0x7 << 76) | (0b10 << 62)  # version 7, RFC 9562 variant
UUID7_RAND_B = (1 << 62) - 1
NULL = "\\N"  # COPY text for NULL


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


def demo_rows(
    *, count: int, days: int, today: date, seed: int, now: datetime | None = None
) -> Iterator[tuple[str, int]]:
    """Reads models and users now; the rows themselves are generated lazily, as chunks of
    Postgres COPY text (one line per row, columns as in `COLUMNS`) with their row counts.

    With `now`, no row is later than it: the day that holds `now` is filled only up to it
    (history that reaches into the future would show on the dashboard as requests to come).

    The reads must happen before COPY starts: the connection can run nothing else during it.
    """
    models, baseline = _models()
    if not models:
        raise ValueError("no models registered; run `manage.py bootstrap_local` first")
    users = demo_users()
    return _generate(
        models, baseline, users, count=count, days=days, today=today, seed=seed, now=now
    )


def _cumulative(weights: Iterable[int]) -> list[float]:
    """Cumulative shares for drawing with `bisect(table, rng.random())`."""
    values = list(weights)
    total, running, shares = sum(values), 0, []
    for weight in values:
        running += weight
        shares.append(running / total)
    shares[-1] = 2.0  # above any draw, whatever the float rounding
    return shares


def _day_bounds_us(day: date) -> tuple[int, int]:
    """A local day as [start, end) in UTC epoch microseconds (23 or 25 hours on DST days)."""
    return (
        int(day_start(day).timestamp()) * 1_000_000,
        int(day_start(day + timedelta(days=1)).timestamp()) * 1_000_000,
    )


class _Clock:
    """Epoch microseconds to COPY text in UTC, the date part cached per day."""

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}

    def text(self, epoch_us: int) -> str:
        seconds, micros = divmod(epoch_us, 1_000_000)
        epoch_day, second = divmod(seconds, 86400)
        day = self._dates.get(epoch_day)
        if day is None:
            day = self._dates[epoch_day] = (EPOCH + timedelta(days=epoch_day)).isoformat()
        hour, second = divmod(second, 3600)
        minute, second = divmod(second, 60)
        return f"{day} {hour:02d}:{minute:02d}:{second:02d}.{micros:06d}+00"


def _generate(
    models: list[_Model],
    baseline: _Model | None,
    users: list[int],
    *,
    count: int,
    days: int,
    today: date,
    seed: int,
    now: datetime | None,
) -> Iterator[tuple[str, int]]:
    """Draws go through `rng.random()` and cumulative tables, and values are written straight as
    COPY text: at ten million rows, per-row objects (UUID, datetime, Decimal) and
    `random.choices` cost more than the database does."""
    rng = random.Random(seed)
    draw = rng.random
    tasks = list(TASK_WEIGHTS)
    task_shares = _cumulative(TASK_WEIGHTS.values())
    complexities = list(COMPLEXITY_WEIGHTS)
    complexity_shares = _cumulative(COMPLEXITY_WEIGHTS.values())
    model_shares = _cumulative(m.weight for m in models)
    base_in = baseline.input_micro if baseline else None
    base_out = baseline.output_micro if baseline else None
    # The columns that follow from the model, and from the caller (user, with or without a key).
    model_text = [f"{m.id}\t{m.name}\t{m.provider}\t{m.locality}" for m in models]
    caller_text = [
        (f"chat\t{user}\t{NULL}", f"openai\t{user}\t{key}")
        for user, key in zip(users, DEMO_KEY_IDS, strict=False)
    ]
    clock = _Clock()
    until_us = None if now is None else int(now.timestamp() * 1_000_000)
    first = today - timedelta(days=days - 1)
    lines: list[str] = []
    for index in range(days):
        # Rows spread evenly over the days and uniformly within each day, in time order as a
        # live system writes them.
        rows_today = (index + 1) * count // days - index * count // days
        day_from_us, day_to_us = _day_bounds_us(first + timedelta(days=index))
        if until_us is not None:
            # Never after `now`: a moment is at most `day_from_us + span_us`.
            day_from_us = min(day_from_us, until_us)
            day_to_us = min(day_to_us, until_us + 1)
        span_us = day_to_us - day_from_us
        for moment in sorted(day_from_us + int(draw() * span_us) for _ in range(rows_today)):
            m = bisect(model_shares, draw())
            model = models[m]
            task = tasks[bisect(task_shares, draw())]
            complexity = (
                "simple" if task == "simple" else complexities[bisect(complexity_shares, draw())]
            )
            who = int(draw() * len(users))
            via_key = draw() < 0.4
            roll = draw()
            status = "success"
            if roll < 0.03:
                status = "error"
            elif roll < 0.04:
                status = "rate_limited"
            elif roll < 0.045:
                status = "partial"
            called = status != "rate_limited"
            fallbacks = 1 if called and draw() < 0.06 else 0
            cache_hit = status == "success" and draw() < 0.08
            tokens_in = 40 + int(draw() * 2961) if called else 0
            tokens_out = 10 + int(draw() * 1191) if status in ("success", "partial") else 0
            if not called:
                cost, state = NULL, "none"
            elif model.input_micro is None or model.output_micro is None:
                cost, state = NULL, "unknown_price"
            else:
                state = "estimated" if draw() < 0.05 else "reported"
                cost = _usd(
                    0
                    if cache_hit
                    else tokens_in * model.input_micro + tokens_out * model.output_micro
                )
            base = (
                _usd(tokens_in * base_in + tokens_out * base_out)
                if called and base_in is not None and base_out is not None
                else NULL
            )
            if not called:
                latency = 0
            elif cache_hit:
                latency = 5
            else:
                latency = int(rng.lognormvariate(0, 0.5) * model.base_latency_ms) * (1 + fallbacks)
            ttft = str(latency // 4) if status == "success" else NULL
            # A time-ordered version-7 UUID (the row's millisecond, then seeded random bits): at
            # ten million rows, random version-4 ids land on random pages of a 400 MB unique
            # index and cost about a quarter of the insert time.
            bits = rng.getrandbits(74)
            request_id = (
                ((moment // 1000) << 80) | UUID7_BITS | ((bits >> 62) << 64) | (bits & UUID7_RAND_B)
            )
            lines.append(
                f"{request_id:032x}\t{clock.text(moment)}\t{caller_text[who][via_key]}\t\t"
                f"{task}\t{complexity}\t\t{model_text[m]}\t{status}\t"
                f"{'' if status == 'success' else status}\t{tokens_in}\t{tokens_out}\t"
                f"{tokens_in // 2 if cache_hit else 0}\t{cost}\t{state}\t{base}\t{latency}\t"
                f"{ttft}\t"
                f"{1 + fallbacks if called else 0}\t{fallbacks}\t{'t' if cache_hit else 'f'}\t"
                "{}\tt\n"
            )
            if len(lines) == CHUNK_ROWS:
                yield "".join(lines), CHUNK_ROWS
                lines = []
    if lines:
        yield "".join(lines), len(lines)


def _typed(line: str) -> dict[str, object]:
    """One COPY text line back to model field values, for databases without COPY."""
    values: dict[str, object] = {
        name: None if text == NULL else text
        for name, text in zip(COLUMNS, line.split("\t"), strict=True)
    }
    values["request_id"] = uuid.UUID(str(values["request_id"]))
    values["created_at"] = datetime.fromisoformat(f"{values['created_at']}:00")
    for name in ("cost_usd", "baseline_cost_usd"):
        if values[name] is not None:
            values[name] = Decimal(str(values[name]))
    for name in ("cache_hit", "is_demo"):
        values[name] = values[name] == "t"
    values["decision_trace"] = {}
    return values


def demo_insert(chunks: Iterator[tuple[str, int]], *, progress: Progress) -> int:
    """COPY in statements of at most `COPY_STATEMENT_ROWS` rows, each its own transaction, so the
    foreign-key checks queued for each row stay bounded in the database's memory."""
    written = 0
    if connection.vendor == "postgresql":
        copy_sql = f"COPY {RequestLog._meta.db_table} ({', '.join(COLUMNS)}) FROM STDIN"
        pending = next(chunks, None)
        while pending is not None:
            in_statement = 0
            with connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
                while pending is not None and in_statement < COPY_STATEMENT_ROWS:
                    text, rows = pending
                    copy.write(text.encode())
                    in_statement += rows
                    progress(written + in_statement)
                    pending = next(chunks, None)
            written += in_statement
    else:
        for text, _ in chunks:
            RequestLog.objects.bulk_create(
                [RequestLog(**_typed(line)) for line in text.splitlines()]
            )
            written += text.count("\n")
            progress(written)
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
    MonthlyModelRollup.objects.filter(is_demo=True).delete()
    get_user_model().objects.filter(username__in=DEMO_USERNAMES).delete()
    return deleted
