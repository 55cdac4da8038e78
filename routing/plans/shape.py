"""The shape of a plan by parts: how many parts, how the partial answers are combined, and the
most each call can read and write. Pure: no I/O, no clock.

Every figure is an upper bound fixed before any model is called: a part reads its instructions
and its share of the document, a reduce step reads the instructions and up to `fan_in` partial
answers, each at most `part_output_tokens` long (every part and intermediate step is sent with
that `max_tokens`). So the plan's most costly run, its budget hold and its rate-limit needs are
known up front, and the reduce tree is the same whatever the partial answers turn out to be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PART_OUTPUT_TOKENS = 1024
"""A part's answer when the request sets no `max_tokens` (capped by the model's own limit)."""
OVERLAP_TOKENS = 200
"""At most this much of each part repeats the end of the part before it."""
PARTIAL_HEADER_TOKENS = 16
"""What the heading of one partial answer in a reduce step may take ("### Part 12 of 40")."""


class PlanImpossible(Exception):
    """The model's window cannot hold a part (or a reduce step of two answers) at all."""


@dataclass(frozen=True, slots=True)
class ReduceStep:
    level: int
    index: int
    inputs: tuple[int, ...]
    """The indexes of the answers it combines, in the previous level (the parts for level 1)."""
    final: bool


@dataclass(frozen=True, slots=True)
class PlanShape:
    part_tokens: int
    """The most document tokens of one part (its overlap included)."""
    part_output_tokens: int
    final_output_tokens: int
    fan_in: int
    """How many partial answers one reduce step combines at most."""
    instructions_tokens: int

    def reduce_steps(self, parts: int) -> list[ReduceStep]:
        """The reduce tree over `parts` answers, level by level; none for a single part."""
        steps: list[ReduceStep] = []
        count, level = parts, 1
        while count > 1:
            groups = math.ceil(count / self.fan_in)
            for index in range(groups):
                inputs = tuple(range(index * self.fan_in, min(count, (index + 1) * self.fan_in)))
                steps.append(ReduceStep(level, index, inputs, final=groups == 1))
            count, level = groups, level + 1
        return steps

    def part_prompt_tokens(self) -> int:
        return self.instructions_tokens + self.part_tokens

    def reduce_prompt_tokens(self, inputs: int) -> int:
        return self.instructions_tokens + inputs * (self.part_output_tokens + PARTIAL_HEADER_TOKENS)


def plan_shape(
    *,
    usable_window: int,
    instructions_tokens: int,
    requested_output_tokens: int | None,
    model_max_output_tokens: int,
) -> PlanShape:
    """The shape for a model whose window holds `usable_window` tokens (its margin taken off),
    for instructions (system prompt, prompt and framing) of `instructions_tokens`."""
    part_output = min(requested_output_tokens or PART_OUTPUT_TOKENS, model_max_output_tokens)
    final_output = min(requested_output_tokens or part_output, model_max_output_tokens)
    room = usable_window - instructions_tokens - max(part_output, final_output)
    part_tokens = room
    fan_in = room // (part_output + PARTIAL_HEADER_TOKENS)
    if part_tokens < 2 * OVERLAP_TOKENS or fan_in < 2:
        raise PlanImpossible(
            f"a window of {usable_window} usable tokens cannot hold {instructions_tokens} "
            f"tokens of instructions, a part and its {part_output}-token answer"
        )
    return PlanShape(
        part_tokens=part_tokens,
        part_output_tokens=part_output,
        final_output_tokens=final_output,
        fan_in=fan_in,
        instructions_tokens=instructions_tokens,
    )
