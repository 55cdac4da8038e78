"""Write the configuration (providers, models, prices, policies) as YAML; credentials never."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.config import config_export


class Command(BaseCommand):
    help = "Export providers, models, prices and routing policies as YAML (no credentials)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="file to write (default: stdout)")
        parser.add_argument("--policies-only", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        text = config_export(include_providers=not options["policies_only"])
        if options["output"]:
            Path(options["output"]).write_text(text)
            self.stdout.write(f"wrote {options['output']}")
        else:
            self.stdout.write(text, ending="")
