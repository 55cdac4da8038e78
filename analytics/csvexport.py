"""CSV of raw requests or of a breakdown, produced in chunks so memory stays flat."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import (
    Aggregate,
    CharField,
    Count,
    Exists,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)

from analytics.filters import ReportFilter
from analytics.models import RequestLog, RequestTag
from analytics.rollups import day_start
from analytics.selectors import GROUPABLE, report_breakdown

RAW_COLUMNS = (
    "request_id",
    "created_at",
    "entry_point",
    "user_id",
    "api_key_id",
    "conversation_id",
    "task_type",
    "complexity",
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
    "is_demo",
    "end_user",
    "project",
    "tags",
    "parent_request_id",
)
# What each column is read from: the tags are one comma-joined annotation (a tag holds no
# comma), named apart from the `tags` relation; a plan's part names its plan by `parent`.
RAW_FIELD_OF = {"tags": "tag_list", "parent_request_id": "parent_id"}
RAW_FIELDS = tuple(RAW_FIELD_OF.get(c, c) for c in RAW_COLUMNS)
BREAKDOWN_COLUMNS = (
    "requests",
    "succeeded",
    "failed",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "estimated_requests",
    "unknown_price_requests",
    "baseline_cost_usd",
    "savings_usd",
    "cache_savings_usd",
    "request_share",
    "cost_share",
    "avg_latency_ms",
    "p95_latency_ms",
)
CHUNK_ROWS = 2000
FORMULA_STARTS = ("=", "+", "-", "@")
CREATED_AT_COLUMN = RAW_COLUMNS.index("created_at")
EXPORT_KINDS = ("raw", *(d for d in GROUPABLE if d != "day"))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        # Callers name their own projects and tags: a spreadsheet must not run one as a formula.
        return f"'{value}"
    return value


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


class _Joined(Aggregate):
    """Strings joined with commas: `string_agg` on Postgres, `group_concat` on SQLite."""

    function = "STRING_AGG"
    template = "%(function)s(%(expressions)s, ',')"
    output_field = CharField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="GROUP_CONCAT", **extra)


def _raw_rows(f: ReportFilter) -> QuerySet[RequestLog]:
    """The requests `f` selects, and the calls of each plan by parts among them (their
    `parent_request_id` names the plan's row, which already carries their tokens and costs)."""
    plan_selected = Exists(RequestLog.objects.filter(f.raw_q(), request_id=OuterRef("parent_id")))
    return RequestLog.objects.filter(
        f.raw_q() | (Q(parent__isnull=False) & plan_selected),
        created_at__gte=day_start(f.start),
        created_at__lt=day_start(f.end + timedelta(days=1)),
    )


def _with_tags(rows: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
    """`tag_list`: the row's tags, one index lookup per exported row (`reqtag_request_tag`)."""
    tags = (
        RequestTag.objects.filter(request_id=OuterRef("request_id"))
        .order_by()
        .values("request_id")
        .annotate(joined=_Joined("tag"))
        .values("joined")
    )
    return rows.annotate(tag_list=Subquery(tags))


def raw_queryset(f: ReportFilter) -> QuerySet[RequestLog, tuple[Any, ...]]:
    return _with_tags(_raw_rows(f)).order_by("created_at", "id").values_list(*RAW_FIELDS)


@dataclass(frozen=True)
class RawSnapshot:
    """The rows a background export holds: those matching when it starts, up to `last_id`
    (rows written while it runs get larger ids and are left out, so the file matches the
    count shown from the start)."""

    rows: int
    last_id: int


def raw_snapshot(f: ReportFilter) -> RawSnapshot:
    found = _raw_rows(f).aggregate(rows=Count("id"), last_id=Max("id"))
    return RawSnapshot(rows=found["rows"], last_id=found["last_id"] or 0)


def raw_chunks(f: ReportFilter, snapshot: RawSnapshot) -> Iterator[tuple[str, int]]:
    """CSV text in chunks, each with how many data rows it holds (for progress).

    Each chunk is one short query that is read to its end, continuing after the last row of
    the one before (keyset), so no read stays open while the caller writes between chunks:
    on SQLite an open read would keep the caller's own writes from committing."""
    yield csv_text([RAW_COLUMNS]), 0
    rows = _with_tags(_raw_rows(f).filter(id__lte=snapshot.last_id)).order_by("created_at", "id")
    after: tuple[datetime, int] | None = None
    while True:
        page = rows
        if after is not None:
            page = rows.filter(created_at__gte=after[0]).exclude(
                created_at=after[0], id__lte=after[1]
            )
        chunk = list(page.values_list(*RAW_FIELDS, "id")[:CHUNK_ROWS])
        if not chunk:
            return
        yield csv_text(row[:-1] for row in chunk), len(chunk)
        if len(chunk) < CHUNK_ROWS:
            return
        after = (chunk[-1][CREATED_AT_COLUMN], chunk[-1][-1])


async def raw_chunks_async(f: ReportFilter) -> AsyncIterator[str]:
    """The same chunks for an async response. Each chunk is fetched and formatted in the one
    database thread, so the server-side cursor stays on its connection and the loop never blocks.
    """
    yield csv_text([RAW_COLUMNS])
    rows = raw_queryset(f).iterator(chunk_size=CHUNK_ROWS)

    def next_chunk() -> tuple[str, int]:
        chunk = list(islice(rows, CHUNK_ROWS))
        return csv_text(chunk), len(chunk)

    while True:
        text, count = await sync_to_async(next_chunk)()
        if count:
            yield text
        if count < CHUNK_ROWS:
            return


def breakdown_csv(f: ReportFilter, dim: str) -> str:
    """A breakdown is at most a few thousand rows, read from rollups; built in one piece."""
    rows: list[Sequence[Any]] = [(dim, *BREAKDOWN_COLUMNS)]
    for r in report_breakdown(f, dim):
        t = r.totals
        rows.append(
            (
                r.key,
                t.requests,
                t.succeeded,
                t.failed,
                t.input_tokens,
                t.output_tokens,
                t.cached_tokens,
                t.cost_usd,
                t.estimated_requests,
                t.unknown_price_requests,
                t.comparable_baseline_usd,
                t.savings_usd,
                t.cache_savings_usd,
                r.request_share,
                r.cost_share,
                t.avg_latency_ms,
                t.p95_latency_ms,
            )
        )
    return csv_text(rows)
