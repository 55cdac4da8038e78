from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import async_playwright, expect

from providers.local_model import free_port
from tests.conftest import ROOT, subprocess_env, wait_http
from tests.e2e.test_analytics import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broken_export_server(
    django_db_setup: None, django_db_blocker: object, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """The web process, running background exports in its own threads (as without Redis),
    with an export folder that cannot be made: its parent is a file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    port = free_port()
    env = subprocess_env(
        ORCHESTRATOR_EXPORT_DIR=str(blocker / "exports"), ORCHESTRATOR_EXPORT_IN_THREAD="1"
    )
    with open(tmp_path / "server.log", "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator_site.serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health", process)
            yield url, blocker / "exports"
        finally:
            process.terminate()
            process.wait(timeout=10)


async def test_failed_export_shows_its_error_in_place_of_the_progress_bar(
    broken_export_server: tuple[str, Path],
) -> None:
    url, export_dir = broken_export_server
    await sync_to_async(User.objects.create_user)(
        "nora", password="correct horse battery", is_staff=True
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{url}/accounts/login/")
        await page.fill("#id_username", "nora")
        await page.fill("#id_password", "correct horse battery")
        await page.click("button[type=submit]")
        await page.goto(f"{url}/reports/")

        await page.get_by_role("button", name="Export in background").click()

        error = page.locator("#export-progress [role=alert]")
        await expect(error).to_have_text(
            f"Export failed: [Errno 20] Not a directory: '{export_dir}'"
        )
        await expect(page.locator("#export-progress progress")).to_be_hidden()
        await expect(page.locator("#export-progress .pct")).to_be_hidden()
        await expect(page.locator("#export-progress .download")).to_be_hidden()
        await expect(page.get_by_role("button", name="Export in background")).to_be_enabled()
        await browser.close()
