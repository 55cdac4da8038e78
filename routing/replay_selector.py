"""Reads what a replay needs — the request log of the last days, the registry, the knob of a named
policy, another router version — and hands it to the pure `routing.replay`. Reads only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from analytics.models import RequestLog
from routing.config.cache import ConfigSnapshot, routing_config_get
from routing.engine.values import RoutingError
from routing.replay import (
    LoggedRequest,
    ReplayError,
    ReplayKnob,
    ReplayResult,
    days_parse,
    ladder_parse,
    number_parse,
    replay,
    trace_router,
)
from routing.router import store
from routing.router.ladder import Knob
from routing.router.model import ArtifactError, Router, router_load

# Requests a model answered; the others (refused, failed, cancelled before an answer) have no
# answer whose cost or quality another route would change.
ANSWERED = (RequestLog.Status.SUCCESS, RequestLog.Status.PARTIAL)
CHUNK_ROWS = 2000


@dataclass(frozen=True, slots=True)
class ReplayQuery:
    days: int = 7
    threshold: float | None = None
    quality_target_pct: float | None = None
    ladder: tuple[str, ...] | None = None
    policy: str = ""
    router: str = ""  # a kept version's name, or (command line only) an artifact's path
    include_demo: bool = False


@dataclass(frozen=True, slots=True)
class ReplayReport:
    start: datetime
    end: datetime
    result: ReplayResult


def replay_query_parse(
    *,
    days: str | None = None,
    threshold: str | None = None,
    quality_target: str | None = None,
    ladder: str | None = None,
    policy: str | None = None,
    router: str | None = None,
    include_demo: bool = False,
) -> ReplayQuery:
    """The command's options or the page's form (blank means not given) → a query."""
    days, threshold, quality_target = _blank(days), _blank(threshold), _blank(quality_target)
    if threshold and quality_target:
        raise ReplayError("give a threshold or a quality target, not both", "threshold")
    ladder = _blank(ladder)
    return ReplayQuery(
        days=days_parse(days) if days else 7,
        threshold=number_parse(threshold, "threshold", 0.0, 1.0) if threshold else None,
        quality_target_pct=(
            number_parse(quality_target, "quality_target", 0.0, 100.0) if quality_target else None
        ),
        ladder=ladder_parse(ladder) if ladder else None,
        policy=_blank(policy),
        router=_blank(router),
        include_demo=include_demo,
    )


def _blank(value: str | None) -> str:
    return (value or "").strip()


def router_resolve(name: str, *, allow_path: bool) -> Router:
    """A kept router version by name, or an artifact file when paths are allowed."""
    try:
        if allow_path and (name.endswith(".json") or "/" in name or Path(name).is_file()):
            return router_load(Path(name))
        return router_load(store.version_path(name))
    except ArtifactError as exc:
        raise ReplayError(str(exc), "router") from exc


def knob_resolve(query: ReplayQuery, config: ConfigSnapshot, router: Router) -> ReplayKnob:
    """The named (or default) policy's knob with the query's threshold, target and ladder on
    top; a quality target becomes a threshold on `router`'s cost-quality curve, as the engine
    does it (`routing.pipeline.route`)."""
    try:
        policy = config.policy(query.policy or None)
    except RoutingError as exc:
        known = ", ".join(sorted(config.policies))
        raise ReplayError(f"{exc}; known: {known}", "policy") from exc
    base = policy.router
    if base is None:
        if query.threshold is None and query.quality_target_pct is None:
            raise ReplayError(
                f"policy {policy.name!r} routes by the complexity heuristic, not the learned "
                "router: give a threshold or a quality target",
                "policy",
            )
        base = Knob()
    ladder = query.ladder or tuple(base.ladder)
    if query.threshold is not None:
        return ReplayKnob(query.threshold, ladder, None, query.policy)
    if query.quality_target_pct is None and base.threshold is not None:
        return ReplayKnob(base.threshold, ladder, None, query.policy)
    target = query.quality_target_pct or base.quality_target_pct or 100.0
    return ReplayKnob(router.threshold_for_quality(target), ladder, target, query.policy)


def logged_requests(
    *, start: datetime, end: datetime, include_demo: bool, with_prompt: bool
) -> Iterator[LoggedRequest]:
    """The answered requests of [start, end), streamed in chunks; prompts only when asked."""
    rows = RequestLog.objects.filter(created_at__gte=start, created_at__lt=end, status__in=ANSWERED)
    if not include_demo:
        rows = rows.filter(is_demo=False)
    names = [
        "task_type",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "model__tier",
        "cost_usd",
        "decision_trace__router",
        "cache_hit",
    ]
    if with_prompt:
        names.append("payload__prompt")
    for row in rows.order_by("created_at", "id").values_list(*names).iterator(CHUNK_ROWS):
        probability, version = trace_router(row[6])
        yield LoggedRequest(
            task_type=row[0],
            input_tokens=row[1],
            output_tokens=row[2],
            cached_tokens=row[3],
            tier=row[4] or "",
            cost_usd=row[5],
            probability=probability,
            router_version=version,
            cache_hit=row[7],
            prompt=row[8] if with_prompt else None,
        )


def replay_report(*, query: ReplayQuery, now: datetime, allow_path: bool = False) -> ReplayReport:
    """Replay the last `query.days` days up to `now`. Raises ReplayError for a bad policy or
    router version."""
    alternative = router_resolve(query.router, allow_path=allow_path) if query.router else None
    config = routing_config_get()
    try:
        curve_router = alternative or store.active_router()
    except ArtifactError as exc:
        raise ReplayError(f"the active router cannot be read: {exc}", "router") from exc
    knob = knob_resolve(query, config, curve_router)
    start = now - timedelta(days=query.days)
    rows = logged_requests(
        start=start, end=now, include_demo=query.include_demo, with_prompt=alternative is not None
    )
    result = replay(rows, knob=knob, registry=config.registry, router=alternative)
    return ReplayReport(start=start, end=now, result=result)
