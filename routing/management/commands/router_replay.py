"""`manage.py router_replay`: what another threshold, quality target, ladder, policy or router
version would have done with the last days' requests (no model is called)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from routing.replay import ReplayError
from routing.replay_selector import ReplayReport, replay_query_parse, replay_report


class Command(BaseCommand):
    help = "Replay the logged requests of the last days through another cost-quality knob."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", default="7", help="How many days back (default 7).")
        parser.add_argument("--threshold", help="The probability threshold of the top rung, 0-1.")
        parser.add_argument(
            "--quality-target", help="Quality to keep, in %% (turned into a threshold)."
        )
        parser.add_argument(
            "--policy", help="Start from this policy's knob (default: the default policy)."
        )
        parser.add_argument(
            "--ladder", help="Tiers cheapest first, e.g. small_local,standard,premium."
        )
        parser.add_argument(
            "--router-artifact",
            help="Re-score kept prompts with this artifact file or kept router version.",
        )
        parser.add_argument("--include-demo", action="store_true", help="Include demo rows.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            query = replay_query_parse(
                days=options["days"],
                threshold=options["threshold"],
                quality_target=options["quality_target"],
                ladder=options["ladder"],
                policy=options["policy"],
                router=options["router_artifact"],
                include_demo=options["include_demo"],
            )
            report = replay_report(query=query, now=timezone.now(), allow_path=True)
        except ReplayError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            data = {
                "start": report.start.isoformat(),
                "end": report.end.isoformat(),
                **report.result.as_json(),
            }
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write("\n".join(report_lines(report)))


def report_lines(report: ReplayReport) -> list[str]:
    r = report.result
    knob = r.knob
    target = f" (quality target {knob.quality_target_pct:g} %)" if knob.quality_target_pct else ""
    lines = [
        f"Replay of {timezone.localtime(report.start):%Y-%m-%d %H:%M} .. "
        f"{timezone.localtime(report.end):%Y-%m-%d %H:%M %Z}",
        f"threshold {knob.threshold:g}{target}, ladder {' > '.join(knob.ladder)}"
        + (f", policy {knob.policy}" if knob.policy else "")
        + (f", router {r.router_version}" if r.router_version else ""),
        "",
        f"requests {r.requests}: replayed {r.replayed}, unchanged {r.unchanged}, "
        f"unroutable {r.unroutable}, unknown price {r.unknown_price} "
        f"(logged unknown price {r.actual_unknown_price})",
    ]
    if r.router_version:
        lines.append(
            f"re-scored {r.rescored}, probability reused (no prompt kept) {r.probability_reused}"
        )
    lines += [
        "",
        f"{'':<22}{'actual':>16}{'replay':>16}{'difference':>16}",
        f"{'cost USD':<22}{r.actual_cost_usd:>16}{r.replay_cost_usd:>16}"
        f"{r.cost_difference_usd:>+16}",
        f"{'cost %':<22}{'':>16}{'':>16}{_or_dash(r.cost_difference_pct, '+'):>16}",
        f"{'quality kept %':<22}{_or_dash(r.actual_quality_kept_pct):>16}"
        f"{_or_dash(r.replay_quality_kept_pct):>16}"
        f"{_or_dash(r.quality_difference_points, '+'):>16}",
        f"(costs over the {r.compared} requests with both costs known; all on the baseline "
        f"model {_or_dash(r.baseline_cost_usd)};",
        f" quality over the {r.scored} requests the router scored)",
        "",
        f"{'tier':<22}{'actual':>16}{'replay':>16}",
        *(f"{t.tier:<22}{t.actual:>16}{t.replay:>16}" for t in r.tiers),
    ]
    return lines


def _or_dash(value: object, sign: str = "") -> str:
    if value is None:
        return "-"
    return format(value, sign) if sign else str(value)
