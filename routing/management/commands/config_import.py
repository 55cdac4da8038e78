"""Apply a configuration file (providers, models, prices, policies); all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.config import ConfigFileError, config_apply
from routing.config.presets import PRESETS, preset_text


class Command(BaseCommand):
    help = "Import providers, models, prices and routing policies from a YAML file (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="YAML file (see docs/routing.md)")
        parser.add_argument("--preset", choices=PRESETS, help="load a shipped policy preset")
        parser.add_argument("--dry-run", action="store_true", help="validate and roll back")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["file"]) == bool(options["preset"]):
            raise CommandError("give a file or --preset, not both")
        if options["preset"]:
            text, source = preset_text(options["preset"]), f"preset {options['preset']}"
        else:
            path = Path(options["file"])
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
            text, source = path.read_text(), str(path)
        try:
            report = config_apply(text=text, dry_run=options["dry_run"])
        except ConfigFileError as error:
            raise CommandError(
                f"{source}: nothing was applied\n"
                + "\n".join(f"{source}: {e}" for e in error.errors)
            ) from error
        verb = "would apply" if options["dry_run"] else "applied"
        self.stdout.write(
            f"{source}: {verb}: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged"
        )
        for label in report.created:
            self.stdout.write(f"  created {label}")
        for label in report.updated:
            self.stdout.write(f"  updated {label}")
