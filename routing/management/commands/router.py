"""`manage.py router train|score|versions|activate|rollback`: the learned router's command line."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.router import store
from routing.router.model import ArtifactError, router_load
from routing.router.scoring import score_file
from routing.router.training import TrainingError, router_train


def default_data() -> list[Path]:
    configured = getattr(settings, "ORCHESTRATOR_ROUTER_DATA", None)
    if configured:
        return [Path(p) for p in configured]
    return [
        Path(settings.BASE_DIR).parent
        / "shared"
        / "data"
        / "routing-dev"
        / "routellm-gpt4-mixtral.jsonl"
    ]


class Command(BaseCommand):
    help = "Train, score with, list, activate and roll back the learned router."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        train = actions.add_parser("train", help="Train an artifact from labelled outcomes.")
        train.add_argument(
            "--data", action="append", type=Path, help="A routing-dev JSONL file (repeatable)."
        )
        train.add_argument(
            "--with-feedback",
            action="store_true",
            help="Add the thumbs and compare choices recorded in the chat as examples.",
        )
        train.add_argument("--feedback-weight", type=float, default=2.0)
        train.add_argument(
            "--output", type=Path, help="Write the artifact here instead of keeping a version."
        )
        train.add_argument("--no-activate", action="store_true", help="Keep, do not activate.")
        train.add_argument(
            "--params",
            help="alpha,shape_weight (skips the parameter search), e.g. 2,1",
        )
        score = actions.add_parser("score", help="Score prompts of a JSONL file.")
        score.add_argument("--input", required=True, help="JSONL in ('-' for stdin).")
        score.add_argument("--output", required=True, help="JSONL out ('-' for stdout).")
        score.add_argument("--artifact", type=Path, help="Score with this file, not the active.")
        actions.add_parser("versions", help="List the kept versions; * marks the active one.")
        activate = actions.add_parser("activate", help="Make a kept version the active one.")
        activate.add_argument("version")
        actions.add_parser("rollback", help="Go back to the version active before this one.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "train":
                self._train(options)
            elif action == "score":
                self._score(options)
            elif action == "versions":
                self._versions()
            elif action == "activate":
                router = store.version_activate(options["version"])
                self.stdout.write(f"active router: {router.version}")
            else:
                router = store.version_rollback()
                self.stdout.write(f"rolled back; active router: {router.version}")
        except (ArtifactError, TrainingError) as exc:
            raise CommandError(str(exc)) from exc

    def _train(self, options: dict[str, Any]) -> None:
        params = None
        if options["params"]:
            try:
                alpha, shape_weight = (float(v) for v in options["params"].split(","))
            except ValueError as exc:
                raise CommandError("--params takes two numbers: alpha,shape_weight") from exc
            params = (alpha, shape_weight)
        if options["feedback_weight"] <= 0:
            raise CommandError("--feedback-weight must be positive")
        result = router_train(
            data=options["data"] or default_data(),
            with_feedback=options["with_feedback"],
            feedback_weight=options["feedback_weight"],
            output=options["output"],
            activate=not options["no_activate"] and options["output"] is None,
            params=params,
            log=self.stdout.write,
        )
        self.stdout.write(f"router {result.version} written to {result.path}")

    def _score(self, options: dict[str, Any]) -> None:
        artifact = options["artifact"]
        router = router_load(artifact) if artifact else store.active_router()
        with ExitStack() as files:
            try:
                src = (
                    sys.stdin.buffer
                    if options["input"] == "-"
                    else files.enter_context(Path(options["input"]).open("rb"))
                )
            except OSError as exc:
                raise CommandError(f"cannot read {options['input']}: {exc}") from exc
            try:
                dst = (
                    sys.stdout.buffer
                    if options["output"] == "-"
                    else files.enter_context(Path(options["output"]).open("wb"))
                )
            except OSError as exc:
                raise CommandError(f"cannot write {options['output']}: {exc}") from exc
            report = score_file(router, src, dst)
        for error in report.errors:
            self.stderr.write(f"{options['input']}: {error}")
        self.stderr.write(
            f"scored {report.scored} prompts with router {router.version}; "
            f"{len(report.errors)} bad lines"
        )
        if report.errors:
            raise CommandError(f"{len(report.errors)} bad lines (listed above); the rest scored")

    def _versions(self) -> None:
        for version in store.versions_list():
            mark = "*" if version.active else " "
            kind = "shipped" if version.shipped else "trained"
            self.stdout.write(f"{mark} {version.version}  {kind}  {version.path}")
