"""Background exports on the zero-setup site (SQLite), while the gateway writes requests."""

from __future__ import annotations

from pathlib import Path

from tests.sqlite_site import sqlite_site_run, sqlite_template

__all__ = ["sqlite_template"]

SEEDED_ROWS = 50_000


def test_background_export_on_sqlite_completes_while_requests_are_written(
    sqlite_template: Path, tmp_path: Path
) -> None:
    result = sqlite_site_run(
        sqlite_template, tmp_path, "tests.analytics.sqlite_export_run", str(SEEDED_ROWS)
    )

    assert result["start_status"] == 202
    assert result["status"]["state"] == "done", result
    assert result["status"]["error"] == ""
    exported = result["status"]["total_rows"]
    # Every seeded row, plus the gateway's rows written before the export started; the rows
    # written while it ran are left out, so the file holds exactly the count shown at the start.
    assert result["csv_seeded_rows"] == SEEDED_ROWS
    assert exported == SEEDED_ROWS + result["csv_gateway_rows"]
    assert result["status"]["written_rows"] == exported
    assert (result["download_status"], result["csv_rows"], result["csv_distinct_ids"]) == (
        200,
        exported,
        exported,
    )
    assert result["csv_header"] == ["request_id", "created_at"]
    assert result["gateway_rows_written"] > result["csv_gateway_rows"]
