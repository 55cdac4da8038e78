"""The planning overhead of a long-context plan by parts, for a document of about 1 M tokens.

Times the CPU work a plan does before its first model call (routing/plans): the routing
estimate of the whole request (whether a plan is needed), the cut into parts on natural
boundaries with overlap (each block counted by the model family's estimate), the reduce tree and
every call's bounds. The route itself and the budget hold are one ordinary decision and one
statement (bench/routing.py, bench/guards.py) and are left out. No database, no network.

    .venv/bin/python bench/plans.py --tokens 1000000 --window 128000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing.engine.tokens import estimate_tokens, plan_tokens, window_usable  # noqa: E402
from routing.plans.shape import OVERLAP_TOKENS, plan_shape  # noqa: E402
from routing.plans.split import document_split  # noqa: E402

SECTION = (
    "## Section {index}\n\n"
    + "The service logged a timeout while reading the ledger, then retried twice. " * 6
    + "\n\n"
    + "Operators restarted the worker and the queue drained within four minutes. " * 4
    + "\n\n```python\ndef drain(queue):\n    while queue:\n        queue.pop()\n```\n\n"
    + "- item one\n- item two\n- item three\n\n"
)


def document(tokens: int) -> str:
    """A Markdown document of about `tokens` tokens (four characters each): headings,
    paragraphs, code blocks and lists."""
    parts: list[str] = []
    size = 0
    index = 0
    while size < tokens * 4:
        section = SECTION.format(index=index)
        parts.append(section)
        size += len(section)
        index += 1
    return "".join(parts)


def plan_once(text: str, window: int, kind: str) -> tuple[int, int, int]:
    estimate_tokens(text)
    shape = plan_shape(
        usable_window=window_usable(window),
        instructions_tokens=200,
        requested_output_tokens=None,
        model_max_output_tokens=4096,
    )
    parts = document_split(
        text,
        max_tokens=shape.part_tokens,
        overlap_tokens=OVERLAP_TOKENS,
        count=partial(plan_tokens, provider_kind=kind),
    )
    steps = shape.reduce_steps(len(parts))
    return len(parts), len(steps), sum(part.tokens for part in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=128_000)
    parser.add_argument("--kind", default="openai")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = document(args.tokens)
    timings_ms: list[float] = []
    result = (0, 0, 0)
    for _ in range(args.repeat):
        began = time.perf_counter()
        result = plan_once(text, args.window, args.kind)
        timings_ms.append((time.perf_counter() - began) * 1000)
    parts, steps, part_tokens = result
    print(
        json.dumps(
            {
                "document_chars": len(text),
                "routing_estimate_tokens": estimate_tokens(text),
                "window": args.window,
                "kind": args.kind,
                "parts": parts,
                "reduce_steps": steps,
                "part_tokens_total": part_tokens,
                "plan_ms_median": round(statistics.median(timings_ms), 1),
                "plan_ms_max": round(max(timings_ms), 1),
                "repeat": args.repeat,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
