"""Planning a long document: token estimates by family, the cut on natural boundaries with
overlap, and the reduce tree with its bounds (pure: no database)."""

from __future__ import annotations

from functools import partial

import pytest

from routing.engine.classify import estimate_tokens as classify_estimate
from routing.engine.tokens import (
    chars_for_tokens,
    estimate_tokens,
    plan_tokens,
    window_usable,
)
from routing.plans.shape import PlanImpossible, ReduceStep, plan_shape
from routing.plans.split import Part, blocks, document_split

DOCUMENT = (
    "# Intro\n"
    "First paragraph, twenty.\n\n"
    "Second paragraph here.\n\n"
    "```python\ndef f():\n\n    return 1\n```\n"
    "## Details\n"
    "Third paragraph is a bit longer than the others.\n\n"
    "Last one.\n"
)


def test_ascii_text_counts_four_characters_a_token_as_before() -> None:
    assert classify_estimate is estimate_tokens
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde", "hello world!")] == [
        0,
        1,
        1,
        2,
        3,
    ]


def test_text_outside_ascii_counts_its_extra_bytes() -> None:
    # 5 characters, 15 UTF-8 bytes: 2 for the characters, 5 for the 10 extra bytes.
    assert estimate_tokens("漢字テスト") == 7
    # 6 Cyrillic characters (12 bytes): 2 + 3.
    assert estimate_tokens("привет") == 5
    assert plan_tokens("漢字テスト", "openai") == 7  # ceil(5 / 4 + 10 / 2)


def test_plan_tokens_by_family_round_up() -> None:
    text = "a" * 33
    assert plan_tokens(text, "openai") == 9  # 8.25
    assert plan_tokens(text, "anthropic") == 10  # 9.43
    assert plan_tokens(text, "ollama") == 10  # 10.0
    assert plan_tokens(text, "some_new_kind") == 10
    assert plan_tokens("", "openai") == 0
    assert chars_for_tokens(10, "anthropic") == 35
    assert window_usable(2000) == 1800
    assert window_usable(128_000) == 115_200


def test_blocks_give_the_document_back_and_keep_code_fences_whole() -> None:
    found = blocks(DOCUMENT)

    assert "".join(found) == DOCUMENT
    assert found == [
        "# Intro\nFirst paragraph, twenty.\n\n",
        "Second paragraph here.\n\n",
        "```python\ndef f():\n\n    return 1\n```\n",
        "## Details\nThird paragraph is a bit longer than the others.\n\n",
        "Last one.\n",
    ]


def test_parts_are_cut_on_boundaries_with_overlap() -> None:
    parts = document_split(DOCUMENT, max_tokens=70, overlap_tokens=30, count=len)

    assert parts == [
        Part(0, "# Intro\nFirst paragraph, twenty.\n\nSecond paragraph here.\n\n", 0, 58, 0, 58),
        Part(
            1,
            "Second paragraph here.\n\n```python\ndef f():\n\n    return 1\n```\n",
            58,
            95,
            24,
            61,
        ),
        Part(
            2,
            "## Details\nThird paragraph is a bit longer than the others.\n\n",
            95,
            156,
            0,
            61,
        ),
        Part(3, "Last one.\n", 156, 166, 0, 10),
    ]
    # Without their overlaps the parts are the document, in order.
    assert "".join(p.text[p.overlap_chars :] for p in parts) == DOCUMENT


def test_the_overlap_gives_way_to_a_block_that_needs_the_room() -> None:
    parts = document_split(DOCUMENT, max_tokens=60, overlap_tokens=25, count=len)

    assert [(p.start, p.end, p.overlap_chars, p.tokens) for p in parts] == [
        (0, 58, 0, 58),
        # The code block (37) and the overlap (24) would make 61: the block keeps its room.
        (58, 95, 0, 37),
        # The heading's block (61) is cut at a line end.
        (95, 155, 0, 60),
        (155, 166, 0, 11),
    ]


def test_a_line_longer_than_a_part_is_cut_by_characters() -> None:
    parts = document_split("x" * 25, max_tokens=10, overlap_tokens=3, count=len)

    assert [(p.text, p.start, p.end) for p in parts] == [
        ("x" * 10, 0, 10),
        ("x" * 10, 10, 20),
        ("x" * 5, 20, 25),
    ]


def test_parts_measured_by_a_family_never_exceed_the_limit() -> None:
    paragraph = "word " * 300 + "\n\n"  # 1,502 characters
    document = paragraph * 40
    count = partial(plan_tokens, provider_kind="ollama")

    parts = document_split(document, max_tokens=2000, overlap_tokens=200, count=count)

    assert len(parts) == 40 // 4
    assert all(count(p.text) <= 2000 for p in parts)
    assert "".join(p.text[p.overlap_chars :] for p in parts) == document


def test_the_shape_bounds_every_call_and_the_reduce_tree() -> None:
    shape = plan_shape(
        usable_window=1800,
        instructions_tokens=72,
        requested_output_tokens=100,
        model_max_output_tokens=4096,
    )

    assert (shape.part_tokens, shape.part_output_tokens, shape.final_output_tokens) == (
        1628,
        100,
        100,
    )
    assert shape.fan_in == 1628 // 116 == 14
    steps = shape.reduce_steps(30)
    assert steps == [
        ReduceStep(1, 0, tuple(range(0, 14)), final=False),
        ReduceStep(1, 1, tuple(range(14, 28)), final=False),
        ReduceStep(1, 2, (28, 29), final=False),
        ReduceStep(2, 0, (0, 1, 2), final=True),
    ]
    assert shape.reduce_steps(1) == []
    assert shape.reduce_prompt_tokens(14) == 72 + 14 * 116


def test_a_window_too_small_for_a_part_is_no_plan() -> None:
    with pytest.raises(PlanImpossible):
        plan_shape(
            usable_window=600,
            instructions_tokens=72,
            requested_output_tokens=200,
            model_max_output_tokens=4096,
        )
