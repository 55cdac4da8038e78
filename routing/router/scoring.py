"""`router score`: a JSONL file of prompts in, a JSONL file of probabilities out.

Each input line is `{"id": ..., "prompt": "..."}` (prompt may be a list of turns); each output
line is `{"id": ..., "score": p}`, in input order. A bad line is reported with its number and
skipped; every good line is still scored and written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from routing.router.model import Router

MAX_PROMPT_CHARS = 2_000_000


@dataclass
class ScoreReport:
    scored: int = 0
    errors: list[str] = field(default_factory=list)


def _prompt(row: Any) -> str | list[str]:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object with id and prompt")
    if "id" not in row:
        raise ValueError('missing "id"')
    if isinstance(row["id"], (dict, list)) or row["id"] is None:
        raise ValueError('"id" must be a string or a number')
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        text_chars = len(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, str) for t in prompt):
        text_chars = sum(len(t) for t in prompt)
    else:
        raise ValueError('"prompt" must be a string or a non-empty list of strings')
    if text_chars > MAX_PROMPT_CHARS:
        raise ValueError(f'"prompt" is longer than {MAX_PROMPT_CHARS} characters')
    return prompt


def score_lines(router: Router, lines: Iterable[bytes], report: ScoreReport) -> Iterator[bytes]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            prompt = _prompt(row)
        except orjson.JSONDecodeError as exc:
            report.errors.append(f"line {number}: not valid JSON ({exc})")
            continue
        except ValueError as exc:
            report.errors.append(f"line {number}: {exc}")
            continue
        report.scored += 1
        yield orjson.dumps({"id": row["id"], "score": router.score(prompt)}) + b"\n"


def score_file(router: Router, source: IO[bytes], target: IO[bytes]) -> ScoreReport:
    report = ScoreReport()
    for out in score_lines(router, source, report):
        target.write(out)
    return report
