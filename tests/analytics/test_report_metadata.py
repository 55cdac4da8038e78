"""Reports by request metadata: filters and breakdowns by project and tag, on live rows and on
rolled-up days, and the same in the CSV exports."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from analytics.csvexport import raw_chunks, raw_queryset, raw_snapshot
from analytics.filters import report_filter_parse
from analytics.models import DailyRollup, RequestLog, RequestTag, RollupState
from analytics.selectors import report_breakdown, report_totals
from analytics.services import request_record, requests_record, rollup_rebuild_range
from tests.analytics.conftest import DAY1, DAY2, at, outcome

RANGE = f"start={DAY1}&end={DAY2}"


@pytest.fixture
def tagged(db: None) -> User:
    """Four requests: search/beta+eu ($0.01), search/beta ($0.02), billing/eu ($0.04), and one
    with no metadata ($0.08)."""
    rows = [
        ("search", ("beta", "eu"), "u-1", "0.01", 100),
        ("search", ("beta",), "u-2", "0.02", 200),
        ("billing", ("eu",), "u-1", "0.04", 400),
        ("", (), "", "0.08", 800),
    ]
    for hour, (project, tags, end_user, cost, tokens) in enumerate(rows):
        request_record(
            outcome=outcome(
                created_at=at(DAY1, 9 + hour),
                project=project,
                tags=tags,
                end_user=end_user,
                model_name="m",
                input_tokens=tokens,
                output_tokens=tokens // 10,
                cost_usd=Decimal(cost),
            )
        )
    return User.objects.create_user("boss", is_staff=True)


def report(query: str) -> object:
    parts = f"{RANGE}&{query}".split("&")
    params = dict(part.split("=", 1) for part in parts if part)
    return report_filter_parse(params, today=DAY2)


def by_key(dim: str, query: str = "") -> dict[str, tuple[int, Decimal, int]]:
    rows = report_breakdown(report(query), dim)  # type: ignore[arg-type]
    return {r.key: (r.totals.requests, r.totals.cost_usd, r.totals.input_tokens) for r in rows}


@pytest.mark.django_db
def test_each_tag_is_its_own_row_on_the_log_and_is_written_with_it(tagged: User) -> None:
    assert sorted(RequestTag.objects.values_list("tag", flat=True)) == ["beta", "beta", "eu", "eu"]
    row = RequestLog.objects.get(project="billing")
    assert (row.end_user, list(row.tags.values_list("tag", flat=True))) == ("u-1", ["eu"])


@pytest.mark.django_db
def test_breakdown_by_project_and_by_tag(tagged: User) -> None:
    assert by_key("project") == {
        "": (1, Decimal("0.08"), 800),
        "billing": (1, Decimal("0.04"), 400),
        "search": (2, Decimal("0.03"), 300),
    }
    # A request with two tags counts under each of them; one without any is "(none)".
    assert by_key("tag") == {
        "": (1, Decimal("0.08"), 800),
        "eu": (2, Decimal("0.05"), 500),
        "beta": (2, Decimal("0.03"), 300),
    }


@pytest.mark.django_db
def test_filters_by_project_tag_and_end_user(tagged: User) -> None:
    def total(query: str) -> tuple[int, Decimal]:
        t = report_totals(report(query))  # type: ignore[arg-type]
        return t.requests, t.cost_usd

    assert total("project=search") == (2, Decimal("0.03"))
    assert total("tag=eu") == (2, Decimal("0.05"))
    assert total("tag=eu&project=search") == (1, Decimal("0.01"))
    assert total("end_user=u-1") == (2, Decimal("0.05"))
    assert total("tag=nothing") == (0, Decimal(0))
    # The tag filter keeps every tag of the requests it selects in the tag breakdown.
    assert by_key("tag", "tag=beta") == {
        "beta": (2, Decimal("0.03"), 300),
        "eu": (1, Decimal("0.01"), 100),
    }


@pytest.mark.django_db
def test_project_survives_the_rollup(tagged: User) -> None:
    rollup_rebuild_range(first=DAY1, last=DAY1)
    RollupState.objects.update_or_create(pk=1, defaults={"rolled_through": DAY1})

    assert sorted(DailyRollup.objects.values_list("project", flat=True)) == [
        "",
        "billing",
        "search",
    ]
    # Read from the rolled-up day now, not the raw rows.
    RequestLog.objects.filter(project="search").update(cost_usd=Decimal(9))
    assert by_key("project")["search"] == (2, Decimal("0.03"), 300)
    assert report_totals(report("project=search")).cost_usd == Decimal("0.03")  # type: ignore[arg-type]


@pytest.mark.django_db
def test_grouped_rows_write_their_tags_in_the_same_transaction(db: None) -> None:
    outcomes = [
        outcome(created_at=at(DAY1, 9), tags=("a", "b"), project="p"),
        outcome(created_at=at(DAY1, 9)),
        outcome(created_at=at(DAY1, 9), tags=("b",)),
    ]
    with transaction.atomic():
        requests_record(outcomes=outcomes)

    tags = {(str(t.request_id), t.tag) for t in RequestTag.objects.all()}
    assert tags == {
        (str(outcomes[0].request_id), "a"),
        (str(outcomes[0].request_id), "b"),
        (str(outcomes[2].request_id), "b"),
    }
    assert RequestLog.objects.count() == 3
    assert RequestTag.objects.filter(created_at=at(DAY1, 9)).count() == 3


@pytest.mark.django_db
def test_csv_exports_filter_by_tag_and_break_down_by_project(tagged: User) -> None:
    client = Client()
    client.force_login(tagged)

    f = report("tag=eu")
    # What the background export writes, and what the streamed download reads.
    text = "".join(chunk for chunk, _ in raw_chunks(f, raw_snapshot(f)))  # type: ignore[arg-type]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(
        (r["project"], r["end_user"], "|".join(sorted(r["tags"].split(",")))) for r in rows
    ) == [
        ("billing", "u-1", "eu"),
        ("search", "u-1", "beta|eu"),
    ]
    streamed = list(raw_queryset(f))  # type: ignore[arg-type]
    assert len(streamed) == 2 and streamed[0][-4:-2] == ("u-1", "search")

    by_project = client.get(f"/reports/export.csv?{RANGE}&kind=project")
    table = list(csv.DictReader(io.StringIO(by_project.content.decode())))
    assert [(r["project"], r["requests"], r["cost_usd"]) for r in table] == [
        ("", "1", "0.08000000"),
        ("billing", "1", "0.04000000"),
        ("search", "2", "0.03000000"),
    ]
    by_tag = client.get(f"/reports/export.csv?{RANGE}&kind=tag&project=search")
    table = list(csv.DictReader(io.StringIO(by_tag.content.decode())))
    assert [(r["tag"], r["requests"]) for r in table] == [("beta", "2"), ("eu", "1")]


@pytest.mark.django_db
def test_reports_page_and_api_show_the_metadata_breakdowns(tagged: User) -> None:
    client = Client()
    client.force_login(tagged)

    page = client.get(f"/reports/?{RANGE}&tag=beta").content.decode()
    assert 'data-breakdown="project"' in page and 'data-breakdown="tag"' in page
    assert 'name="tag" id="f-tag" maxlength="64" value="beta"' in page
    api = client.get(f"/reports/api/breakdown/tag?{RANGE}&project=billing").json()
    assert [(r["key"], r["requests"]) for r in api["rows"]] == [("eu", 1)]
    assert api["filter"]["project"] == "billing"


def test_a_spreadsheet_formula_in_a_project_is_exported_as_text() -> None:
    from analytics.csvexport import csv_text

    assert csv_text([("=HYPERLINK(1)", "@x", "plain")]) == "'=HYPERLINK(1),'@x,plain\r\n"
