"""Old raw rows go in bounded batches; their days are already in the rollups, which stay."""

from __future__ import annotations

from datetime import datetime, timedelta

from analytics.models import RequestLog, StoredResponse
from analytics.rollups import day_start, rolled_through


def retention_apply(*, now: datetime, keep_days: int, batch_size: int = 10_000) -> int:
    """Delete raw rows older than `keep_days` whose day is rolled up; returns rows deleted.

    `keep_days` of 0 keeps everything. Each batch is its own short statement, so a large
    backlog never holds a long lock or one huge transaction.
    """
    watermark = rolled_through()
    if keep_days <= 0 or watermark is None:
        return 0
    cutoff = min(now - timedelta(days=keep_days), day_start(watermark + timedelta(days=1)))
    deleted = 0
    while True:
        ids = list(
            RequestLog.objects.filter(created_at__lt=cutoff)
            .order_by()
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        RequestLog.objects.filter(id__in=ids).delete()
        deleted += len(ids)


def responses_expire(*, now: datetime, keep_days: int, batch_size: int = 10_000) -> int:
    """Delete stored `/v1/responses` answers older than `keep_days` (0 keeps them all); a
    `previous_response_id` naming one of them is then not found. Returns the number deleted."""
    if keep_days <= 0:
        return 0
    cutoff = now - timedelta(days=keep_days)
    deleted = 0
    while True:
        ids = list(
            StoredResponse.objects.filter(created_at__lt=cutoff)
            .order_by()
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        StoredResponse.objects.filter(id__in=ids).delete()
        deleted += len(ids)
