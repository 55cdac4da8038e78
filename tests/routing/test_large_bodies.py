"""A large prompt's CPU work (parsing, classifying, counting tokens) never holds the event loop
for long: other requests on the same process go on meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from analytics.models import RequestLog
from analytics.pricing import _TOKEN_PIECE, SLICE_CHARS, tokens_estimate
from core.threads import cpu_bound
from orchestrator_site.asgi import application
from routing.engine.classify import (
    LIST_ITEM,
    NUMBER,
    REASONING,
    TASK_PATTERNS,
    HeuristicClassifier,
    match_count,
    text_slices,
)
from routing.pipeline.journal import journal_background_idle
from tests.asgi_client import asgi_request
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, settle_config
from tests.routing.streams import openai_sse

PATTERNS = [pattern for _, pattern in TASK_PATTERNS] + [REASONING, NUMBER, LIST_ITEM]
# Pieces that sit on the patterns' edges: phrases with spaces, list markers, blank lines,
# numbers with decimals, words joined by hyphens and underscores.
FRAGMENTS = [
    "step by step",
    "step",
    " by ",
    "\n",
    "\n\n",
    "1.",
    "2)",
    " ",
    "  ",
    "\t",
    "- ",
    "* ",
    "code",
    "?",
    "trade-off",
    "trade-offs",
    "12.5",
    "3",
    ".",
    "unit test",
    "what is",
    "pros and cons",
    "-",
    "_",
    "é",
    "def",
]
# About 1.9 MB of short lines of short words: the slowest text for the classifier's patterns.
LARGE_PROMPT = "lorem ipsum a b c d e f g h i j k l m n o p q r s t u v w x y z 42\n" * 28_000


def random_text(rng: random.Random, fragments: int) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(fragments))


def test_counts_over_slices_are_the_counts_over_the_whole_text() -> None:
    rng = random.Random(5)
    for _ in range(1500):
        text = random_text(rng, rng.randint(1, 120))
        bounds = text_slices(text, slice_chars=rng.randint(1, 40))
        assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
        assert all(end == start for (_, end), (start, _) in itertools.pairwise(bounds))
        for pattern in PATTERNS:
            assert match_count(pattern, text, bounds) == len(pattern.findall(text)), (
                pattern.pattern,
                text,
            )


def test_token_estimate_of_a_large_text_is_the_whole_texts() -> None:
    text = random_text(random.Random(9), 80_000)
    assert len(text) > 3 * SLICE_CHARS

    whole = sum(math.ceil(len(piece) / 4) for piece in _TOKEN_PIECE.findall(text))

    assert tokens_estimate(text) == whole
    assert tokens_estimate("abcdefgh four_score 12") == 2 + 1 + 1 + 2 + 1


async def longest_stall_s(work: Callable[[], Awaitable[Any]]) -> float:
    """The longest the event loop went without running a heartbeat task while `work` ran."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    try:
        await work()
    finally:
        done.set()
        await beat
    return max(gaps)


# Both time how long the event loop goes without running: they run alone (`make test` runs the
# `serial` tests after the parallel run), where no other test's process takes the cores.
@pytest.mark.serial
async def test_classifying_and_counting_a_large_prompt_in_a_thread_leave_the_loop_free() -> None:
    classifier = HeuristicClassifier()

    prompt = LARGE_PROMPT[: len(LARGE_PROMPT) // 3]

    async def on_loop() -> None:
        classifier.classify(prompt)
        tokens_estimate(prompt)

    async def in_worker() -> None:
        await cpu_bound(classifier.classify, prompt)
        await cpu_bound(tokens_estimate, prompt)

    # The same work, on the loop, stalls it for the whole of it: the yardstick on this machine.
    blocked_s = await longest_stall_s(on_loop)
    stalled_s = await longest_stall_s(in_worker)

    # In a worker thread the loop waits at most for one slice's regex call at a time.
    assert stalled_s < blocked_s / 5, (stalled_s, blocked_s)


@pytest.mark.serial
@pytest.mark.django_db(transaction=True)
async def test_a_2_mb_prompt_does_not_stall_other_requests(upstream: UpstreamServer) -> None:
    models = await sync_to_async(gateway_registry)(upstream)
    for model in models.values():
        model.context_window = 1_000_000
        await model.asave(update_fields=["context_window"])
    await sync_to_async(settle_config)()
    # No usage reported: the gateway counts the prompt's tokens itself.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["Read it."], usage=None)))
    key = await sync_to_async(new_key)()
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]

    def body(prompt: str) -> bytes:
        messages = [{"role": "user", "content": prompt}]
        return json.dumps({"model": "auto", "messages": messages}).encode()

    large_body = body(LARGE_PROMPT)
    assert 1_800_000 < len(large_body) < 2 * 1024 * 1024
    answers: list[Any] = []

    async def both() -> None:
        large = asyncio.create_task(
            asgi_request(
                application, "POST", "/v1/chat/completions", body=large_body, headers=headers
            )
        )
        await asyncio.sleep(0.05)
        small = await asgi_request(
            application, "POST", "/v1/chat/completions", body=body("Say hi"), headers=headers
        )
        answers.extend([await large, small])

    # The process's first request imports what the answer path needs: not measured.
    warm = await asgi_request(
        application, "POST", "/v1/chat/completions", body=body("Warm up"), headers=headers
    )
    assert warm.status == 200
    stalled_s = await longest_stall_s(both)
    await journal_background_idle()

    large_answer, small_answer = answers
    assert (large_answer.status, small_answer.status) == (200, 200), large_answer.body[:300]
    assert json.loads(large_answer.body)["choices"][0]["message"]["content"] == "Read it."
    assert stalled_s < 0.2, stalled_s
    rows = await sync_to_async(
        lambda: list(
            RequestLog.objects.order_by("-input_tokens").values_list("input_tokens", "cost_state")
        )
    )()
    # The large prompt's tokens were counted (in a worker thread), exactly.
    assert rows[0] == (tokens_estimate(f"user: {LARGE_PROMPT}"), "estimated")
