"""The report filter: one frozen value parsed from a query string, used by pages, API and CSV."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta

from django.db.models import Exists, OuterRef, Q

from analytics.models import RequestTag
from analytics.scoping import EVERYTHING, Scope

PRESETS = {"today": 0, "7d": 6, "30d": 29, "90d": 89, "365d": 364}
DEFAULT_PRESET = "30d"
MAX_RANGE_DAYS = 3660
TEXT_FIELDS = ("model_name", "provider_name", "locality", "task_type", "status", "project")
# Request metadata only the raw log holds (a request has many tags; the end user is not rolled
# up): a filter on one of them reads raw rows, through their indexes.
RAW_ONLY_FIELDS = ("end_user", "tag")
ID_FIELDS = ("user_id", "api_key_id")
# `demo=hide` leaves out the synthetic (`is_demo`) rows; `demo=only` keeps nothing else.
DEMO_CHOICES = ("", "hide", "only")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class ReportFilter:
    start: date
    end: date
    preset: str = ""
    model_name: str = ""
    provider_name: str = ""
    locality: str = ""
    task_type: str = ""
    status: str = ""
    project: str = ""
    end_user: str = ""
    tag: str = ""
    user_id: int | None = None
    api_key_id: int | None = None
    demo: str = ""
    scope: Scope = EVERYTHING

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def raw_only(self) -> bool:
        """Whether the filter names something only raw rows hold (see `RAW_ONLY_FIELDS`)."""
        return any(getattr(self, name) for name in RAW_ONLY_FIELDS)

    def raw_q(self) -> Q:
        """`dimension_q` and the conditions only the raw log can answer. The calls of a plan by
        parts are left out: their plan's own row carries their tokens and costs."""
        q = self.dimension_q() & Q(parent__isnull=True)
        if self.end_user:
            q &= Q(end_user=self.end_user)
        if self.tag:
            q &= Q(
                Exists(RequestTag.objects.filter(request_id=OuterRef("request_id"), tag=self.tag))
            )
        return q

    def dimension_q(self) -> Q:
        """Conditions on the columns that raw rows and rollups share."""
        q = self.scope.q()
        for name in TEXT_FIELDS:
            value = getattr(self, name)
            if value:
                q &= Q(**{name: value})
        for name in ID_FIELDS:
            value = getattr(self, name)
            if value is not None:
                q &= Q(**{name: value})
        if self.demo:
            q &= Q(is_demo=self.demo == "only")
        return q

    def as_query(self) -> dict[str, str]:
        """The query-string form, for links, exports and the export job."""
        query = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        if self.preset:
            query = {"preset": self.preset}
        for name, value in asdict(self).items():
            if name in TEXT_FIELDS and value:
                query[name] = value
            if name in ID_FIELDS and value is not None:
                query[name] = str(value)
            if name in RAW_ONLY_FIELDS and value:
                query[name] = value
        if self.demo:
            query["demo"] = self.demo
        return query

    def with_scope(self, scope: Scope) -> ReportFilter:
        return replace(self, scope=scope)


def _parse_date(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise FilterError(f"{name} must be a date like 2026-01-31") from exc


def _parse_id(raw: str, name: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit():
        raise FilterError(f"{name} must be a whole number")
    return int(raw)


def report_filter_parse(
    params: Mapping[str, str], *, today: date, scope: Scope = EVERYTHING
) -> ReportFilter:
    """Read a filter from query parameters; raises FilterError with a message for the user."""
    preset = params.get("preset", "")
    if params.get("start") or params.get("end"):
        start = _parse_date(params.get("start", ""), "start")
        end = _parse_date(params.get("end", "") or today.isoformat(), "end")
        preset = ""
    else:
        preset = preset or DEFAULT_PRESET
        if preset not in PRESETS:
            raise FilterError(f"preset must be one of {', '.join(PRESETS)}")
        end = today
        start = today - timedelta(days=PRESETS[preset])
    if start > end:
        raise FilterError("start must not be after end")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise FilterError(f"a report covers at most {MAX_RANGE_DAYS} days")
    values: dict[str, object] = {
        name: params.get(name, "").strip()[:200] for name in (*TEXT_FIELDS, *RAW_ONLY_FIELDS)
    }
    for name in ID_FIELDS:
        values[name] = _parse_id(params.get(name, "").strip(), name)
    values["demo"] = params.get("demo", "").strip()
    if values["demo"] not in DEMO_CHOICES:
        raise FilterError("demo must be hide or only (or absent)")
    if not scope.unrestricted:
        # Someone who sees only their own rows cannot widen that by naming another user.
        values["user_id"] = None if values["user_id"] in (None, scope.user_id) else -1
    return ReportFilter(start=start, end=end, preset=preset, scope=scope, **values)  # type: ignore[arg-type]
