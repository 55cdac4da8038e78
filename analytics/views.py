"""Analytics pages, JSON API and CSV downloads. Each parses the filter, calls selectors, shapes."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST

from analytics import charts
from analytics.budgets import budget_statuses, budgets_available
from analytics.csvexport import EXPORT_KINDS, breakdown_csv, raw_chunks_async
from analytics.demo import demo_wipe
from analytics.export_jobs import export_job_create
from analytics.exports import export_path
from analytics.filters import PRESETS, FilterError, ReportFilter, report_filter_parse
from analytics.insights import report_recommendations, report_score
from analytics.models import ExportJob
from analytics.router_report import router_curve
from analytics.scoping import Scope, scope_for
from analytics.selectors import (
    GROUPABLE,
    HOURLY_MAX_DAYS,
    BreakdownRow,
    DayPoint,
    ModelDayCost,
    baseline_model,
    filter_choices,
    report_breakdown,
    report_by_day,
    report_by_hour,
    report_by_hour_points,
    report_cost_by_model_day,
    report_cost_by_model_hour,
    report_cube,
    report_demo_requests,
    report_totals,
)
from analytics.serialize import (
    breakdown_json,
    budgets_json,
    days_json,
    quality_json,
    recommendations_json,
    savings_json,
    score_json,
    totals_json,
)

BREAKDOWNS = (
    ("model_name", "Model"),
    ("provider_name", "Provider"),
    ("locality", "Local / cloud"),
    ("task_type", "Task type"),
    ("complexity", "Complexity"),
    ("status", "Status"),
    ("user_id", "User"),
    ("api_key_id", "API key"),
    ("project", "Project"),
    ("tag", "Tag"),
)
METADATA_BREAKDOWNS = ("project", "tag")


def _scope(user: AbstractBaseUser | AnonymousUser) -> Scope:
    if user.pk is None:
        raise PermissionDenied("sign in to see reports")
    return scope_for(user_id=int(user.pk), is_staff=bool(getattr(user, "is_staff", False)))


def _filter(request: HttpRequest) -> ReportFilter:
    return report_filter_parse(request.GET, today=timezone.localdate(), scope=_scope(request.user))


def _bad_filter(request: HttpRequest, error: FilterError) -> HttpResponse:
    return HttpResponseBadRequest(str(error))


def _page_context(request: HttpRequest, f: ReportFilter) -> dict[str, Any]:
    cube = report_cube(f)
    totals = report_totals(f, cube)
    baseline = baseline_model()
    query = f.as_query()
    return {
        "filter": f,
        "query": urlencode(query),
        "presets": list(PRESETS),
        "choices": filter_choices(),
        "totals": totals,
        "baseline": baseline,
        "score": report_score(f, totals),
        "recommendations": report_recommendations(f, cube),
        "inline_export_max": settings.ORCHESTRATOR_EXPORT_INLINE_MAX_ROWS,
        "is_staff": request.user.is_staff,
        "demo_requests": report_demo_requests(f),
        "demo_hide_query": urlencode({**query, "demo": "hide"}),
        "demo_show_query": urlencode({k: v for k, v in query.items() if k != "demo"}),
    }


def _model_colours(context: dict[str, Any], by_model: list[BreakdownRow]) -> dict[str, str]:
    """Colours over every registered model and every model in the range: a model has the
    same colour in every chart and on every page."""
    names = [*context["choices"].models, *(r.key or charts.NO_MODEL for r in by_model)]
    return charts.model_colours(names)


def _short(f: ReportFilter) -> bool:
    return f.days <= HOURLY_MAX_DAYS


def _cost_by_model(f: ReportFilter) -> list[ModelDayCost]:
    return report_cost_by_model_hour(f) if _short(f) else report_cost_by_model_day(f)


def _savings_points(f: ReportFilter) -> list[DayPoint]:
    return report_by_hour_points(f) if _short(f) else report_by_day(f)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    try:
        f = _filter(request)
    except FilterError as error:
        return _bad_filter(request, error)
    context = _page_context(request, f)
    by_model = report_breakdown(f, "model_name")
    colours = _model_colours(context, by_model)
    context["charts"] = {
        "cost-by-model": charts.cost_by_model_chart(_cost_by_model(f), colours),
        "savings": charts.savings_chart(_savings_points(f)),
        "model-distribution": charts.model_distribution_chart(by_model, colours),
    }
    context["budgets"] = budget_statuses(f.scope)
    context["budgets_available"] = budgets_available()
    return render(request, "analytics/dashboard.html", context)


@login_required
def reports(request: HttpRequest) -> HttpResponse:
    try:
        f = _filter(request)
    except FilterError as error:
        return _bad_filter(request, error)
    context = _page_context(request, f)
    breakdowns = {dim: report_breakdown(f, dim) for dim, _ in BREAKDOWNS}
    context["breakdowns"] = [
        (dim, label, rows)
        for dim, label in BREAKDOWNS
        # Metadata breakdowns only once some request carried it: else one "(none)" row.
        if (rows := breakdowns[dim])
        and (dim not in METADATA_BREAKDOWNS or any(r.key for r in rows))
    ]
    context["hours"] = report_by_hour(f)
    colours = _model_colours(context, breakdowns["model_name"])
    context["charts"] = {
        "latency": charts.latency_chart(breakdowns["model_name"], colours),
        "task-types": charts.task_type_chart(breakdowns["task_type"]),
        "savings": charts.savings_chart(_savings_points(f)),
    }
    curve = router_curve()
    context["router_curve"] = curve
    if curve is not None:
        context["charts"]["router-curve"] = charts.router_curve_chart(curve)
    return render(request, "analytics/reports.html", context)


@login_required
def budgets(request: HttpRequest) -> HttpResponse:
    scope = _scope(request.user)
    return render(
        request,
        "analytics/budgets.html",
        {"budgets": budget_statuses(scope), "budgets_available": budgets_available()},
    )


@login_required
@require_POST
def demo_delete(request: HttpRequest) -> HttpResponse:
    """Delete every demo request and its rollups (staff only); the real rows' rollups are
    separate rows (`is_demo` is a rollup dimension), so they stay exact without a rebuild."""
    if not request.user.is_staff:
        raise PermissionDenied("only staff can delete demo data")
    deleted = demo_wipe()
    messages.success(request, f"Deleted {deleted} demo requests; reports now show real ones only.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("dashboard")
    return HttpResponseRedirect(target)


def _api_login(request: HttpRequest) -> JsonResponse | None:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "authentication required"}, status=401)
    return None


def api_summary(request: HttpRequest) -> JsonResponse:
    if denied := _api_login(request):
        return denied
    try:
        f = _filter(request)
    except FilterError as error:
        return JsonResponse({"error": str(error)}, status=400)
    cube = report_cube(f)
    totals = report_totals(f, cube)
    baseline = baseline_model()
    return JsonResponse(
        {
            "filter": f.as_query(),
            "totals": totals_json(totals),
            "savings": savings_json(totals, baseline.label if baseline else None),
            "quality": quality_json(totals),
            "score": score_json(report_score(f, totals)),
            "recommendations": recommendations_json(report_recommendations(f, cube)),
        }
    )


def api_breakdown(request: HttpRequest, dim: str) -> JsonResponse:
    if denied := _api_login(request):
        return denied
    if dim not in GROUPABLE or dim == "day":
        return JsonResponse({"error": f"unknown breakdown {dim}"}, status=404)
    try:
        f = _filter(request)
    except FilterError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"filter": f.as_query(), "rows": breakdown_json(report_breakdown(f, dim))})


def api_timeseries(request: HttpRequest) -> JsonResponse:
    if denied := _api_login(request):
        return denied
    try:
        f = _filter(request)
    except FilterError as error:
        return JsonResponse({"error": str(error)}, status=400)
    hours = [
        {"hour": h.hour.isoformat(), "requests": h.requests, "cost_usd": format(h.cost_usd, "f")}
        for h in report_by_hour(f)
    ]
    return JsonResponse(
        {"filter": f.as_query(), "days": days_json(report_by_day(f)), "hours": hours}
    )


def api_budgets(request: HttpRequest) -> JsonResponse:
    if denied := _api_login(request):
        return denied
    return JsonResponse(
        {
            "available": budgets_available(),
            "budgets": budgets_json(budget_statuses(_scope(request.user))),
        }
    )


async def export_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Raw rows stream through an async iterator (flat memory); breakdowns are small."""
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponseRedirect(f"{reverse('login')}?next={request.get_full_path()}")
    kind = request.GET.get("kind", "raw")
    if kind not in EXPORT_KINDS:
        return HttpResponseBadRequest(f"kind must be one of {', '.join(EXPORT_KINDS)}")
    try:
        scope = await sync_to_async(_scope)(user)
        f = report_filter_parse(request.GET, today=timezone.localdate(), scope=scope)
    except FilterError as error:
        return HttpResponseBadRequest(str(error))
    name = f"requests-{kind}-{f.start}-{f.end}.csv"
    disposition = f'attachment; filename="{name}"'
    if kind != "raw":
        body = await sync_to_async(breakdown_csv)(f, kind)
        return HttpResponse(
            body,
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    return StreamingHttpResponse(
        raw_chunks_async(f),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": disposition},
    )


@login_required
@require_POST
def export_start(request: HttpRequest) -> JsonResponse:
    kind = request.POST.get("kind", "raw")
    if kind not in EXPORT_KINDS:
        return JsonResponse({"error": f"unknown export kind {kind}"}, status=400)
    try:
        f = report_filter_parse(
            request.POST, today=timezone.localdate(), scope=_scope(request.user)
        )
    except FilterError as error:
        return JsonResponse({"error": str(error)}, status=400)
    job = export_job_create(owner_id=f.scope.user_id or int(str(request.user.pk)), f=f, kind=kind)
    return JsonResponse(
        {"id": job.pk, "status_url": reverse("analytics:export_status", args=[job.pk])},
        status=202,
    )


def _own_job(request: HttpRequest, job_id: int) -> ExportJob:
    return get_object_or_404(ExportJob, pk=job_id, owner_id=request.user.pk)


@login_required
def export_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = _own_job(request, job_id)
    done = job.state == ExportJob.State.DONE
    return JsonResponse(
        {
            "id": job.pk,
            "state": job.state,
            "total_rows": job.total_rows,
            "written_rows": job.written_rows,
            "progress_pct": job.progress_pct,
            "error": job.error,
            "download_url": reverse("analytics:export_download", args=[job.pk]) if done else None,
        }
    )


@login_required
def export_download(request: HttpRequest, job_id: int) -> FileResponse:
    job = _own_job(request, job_id)
    path = export_path(job)
    if job.state != ExportJob.State.DONE or not path.exists():
        raise Http404("export not ready")
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=job.file_name, content_type="text/csv"
    )
