from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from analytics.demo import demo_insert, demo_rows, demo_wipe
from analytics.rollups import local_day, rollup_backfill


class Command(BaseCommand):
    help = "Load labelled synthetic request history (is_demo=True); --wipe removes it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=2000)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--wipe", action="store_true", help="delete demo data and stop")
        parser.add_argument("--no-rollup", action="store_true", help="skip building rollups")

    def _bar(self, total: int, started: float, unit: str) -> Any:
        def show(done: int) -> None:
            width = 30
            filled = width * done // max(total, 1)
            rate = done / max(time.monotonic() - started, 1e-6)
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}  {rate:,.0f}/s"
            )
            sys.stderr.flush()

        return show

    def handle(self, *args: Any, **options: Any) -> None:
        if options["wipe"]:
            deleted = demo_wipe()
            self.stdout.write(f"deleted {deleted} demo requests")
            return
        count, days = options["requests"], options["days"]
        if count < 1 or days < 1:
            raise CommandError("--requests and --days must be at least 1")
        started = time.monotonic()
        try:
            now = timezone.now()
            rows = demo_rows(
                count=count, days=days, today=local_day(now), seed=options["seed"], now=now
            )
            written = demo_insert(rows, progress=self._bar(count, started, "rows"))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        sys.stderr.write("\n")
        seeded_s = time.monotonic() - started
        self.stdout.write(f"inserted {written} demo requests over {days} days in {seeded_s:.1f} s")
        if not options["no_rollup"]:
            t0 = time.monotonic()
            first = timezone.localdate() - timedelta(days=days - 1)
            through = rollup_backfill(
                first=first, now=timezone.now(), progress=self._bar(days - 1, t0, "days")
            )
            sys.stderr.write("\n")
            self.stdout.write(f"rolled up through {through} in {time.monotonic() - t0:.1f} s")
