"""The training flow behind `manage.py router train`: read the data, add feedback, show the
cross-validated figures before and after, write the artifact and (optionally) activate it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.router import store
from routing.router.train import (
    Example,
    Params,
    artifact_bytes,
    data_digest,
    dev_examples,
    file_sha256,
    train_artifact,
)


class TrainingError(ValueError):
    """The training inputs cannot be used (a missing or malformed data file)."""


@dataclass(frozen=True, slots=True)
class TrainResult:
    version: str
    path: Path
    body: dict[str, Any]


def _load(paths: Sequence[Path]) -> tuple[list[Example], list[dict[str, Any]], list[bytes]]:
    examples: list[Example] = []
    files = []
    parts = []
    for path in paths:
        if not path.is_file():
            raise TrainingError(f"no training data at {path}")
        try:
            found = dev_examples(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}: not a routing-dev file: {exc}") from exc
        examples.extend(found)
        files.append({"name": path.name, "sha256": file_sha256(path), "rows": len(found)})
        parts.append(path.read_bytes())
    if not examples:
        raise TrainingError("the training data holds no usable rows")
    return examples, files, parts


def _table(title: str, figures: dict[str, dict[str, float]]) -> list[str]:
    lines = [title, f"  {'source':<10} {'n':>5} {'APGR':>7} {'CPT50':>7} {'CPT80':>7} {'95%':>7}"]
    for source, row in figures.items():
        lines.append(
            f"  {source:<10} {int(row['n']):>5} {row['apgr']:>7.3f} {row['cpt50']:>7.1%} "
            f"{row['cpt80']:>7.1%} {row['share_for_95pct_quality']:>7.1%}"
        )
    return lines


def router_train(
    *,
    data: Sequence[Path],
    with_feedback: bool = False,
    feedback_weight: float = 2.0,
    output: Path | None = None,
    activate: bool = True,
    params: tuple[float, float] | None = None,
    log: Callable[[str], Any] = print,
) -> TrainResult:
    examples, files, parts = _load(data)
    trained_on: dict[str, Any] = {"files": files, "rows": len(examples)}
    if with_feedback:
        from routing.router.feedback import feedback_examples

        found = feedback_examples(weight=feedback_weight)
        log(
            f"feedback: {len(found.examples)} examples (weight {feedback_weight}); skipped "
            f"{found.skipped_premium} premium answers and {found.skipped_no_prompt} without "
            "a kept prompt"
        )
        examples = [*examples, *found.examples]
        parts.append(
            json.dumps(
                [[e.id, e.prompt, e.strong, e.weak, e.weight] for e in found.examples]
            ).encode()
        )
        trained_on["feedback_examples"] = len(found.examples)
        trained_on["feedback_weight"] = feedback_weight
    chosen = Params(alpha=params[0], shape_weight=params[1]) if params else None
    body = train_artifact(
        examples, data_sha256=data_digest(parts), trained_on=trained_on, params=chosen
    )
    if output is None:
        current = store.active_router()
        before = current.evaluation.get("out_of_fold")
        if before:
            log("\n".join(_table(f"before: active router {current.version}", before)))
        after = body["evaluation"]["out_of_fold"]
        log("\n".join(_table(f"after: new router {body['version']}", after)))
    payload = artifact_bytes(body)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(payload)
        path = output
    else:
        path = store.version_store(payload, body["version"])
        if activate:
            store.version_activate(body["version"])
            log(f"activated {body['version']} (roll back with: manage.py router rollback)")
    return TrainResult(body["version"], path, body)
