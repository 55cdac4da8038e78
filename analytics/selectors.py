from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum

from analytics.models import RequestLog


@dataclass(frozen=True)
class Totals:
    requests: int
    succeeded: int
    failed: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    unknown_price_requests: int
    estimated_requests: int

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd


def totals_all_time() -> Totals:
    row = RequestLog.objects.aggregate(
        requests=Count("id"),
        succeeded=Count("id", filter=Q(status=RequestLog.Status.SUCCESS)),
        cost=Sum("cost_usd"),
        baseline=Sum("baseline_cost_usd"),
        unknown=Count("id", filter=Q(cost_state=RequestLog.CostState.UNKNOWN_PRICE)),
        estimated=Count("id", filter=Q(cost_state=RequestLog.CostState.ESTIMATED)),
    )
    return Totals(
        requests=row["requests"],
        succeeded=row["succeeded"],
        failed=row["requests"] - row["succeeded"],
        cost_usd=row["cost"] or Decimal(0),
        baseline_cost_usd=row["baseline"] or Decimal(0),
        unknown_price_requests=row["unknown"],
        estimated_requests=row["estimated"],
    )
