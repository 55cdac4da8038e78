"""Labelled examples from use: thumbs on chat answers (a compare view's choice is a thumb up on
the chosen answer and a thumb down on the others).

Only answers whose prompt was kept (`RequestPayload`) and whose model is known can teach the
router. An answer below the premium tier:
- thumbs down → the premium model was needed (strong 1, weak 0);
- thumbs up → the cheap model sufficed (strong 1, weak 1: no gain from premium).
A premium answer says nothing about what a cheap model would have done, and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics.models import RequestFeedback, RequestPayload
from analytics.quality import PREMIUM_TIER
from routing.router.train import Example


@dataclass(frozen=True, slots=True)
class FeedbackExamples:
    examples: tuple[Example, ...]
    skipped_premium: int
    skipped_no_prompt: int


def feedback_examples(*, weight: float) -> FeedbackExamples:
    examples = []
    skipped_premium = 0
    skipped_no_prompt = 0
    rows = (
        RequestFeedback.objects.select_related("request__model", "request__payload")
        .filter(request__is_demo=False)
        .order_by("request__request_id")
    )
    for feedback in rows:
        log = feedback.request
        try:
            prompt = log.payload.prompt
        except RequestPayload.DoesNotExist:
            prompt = ""
        if not prompt:
            skipped_no_prompt += 1
            continue
        if log.model is None or log.model.tier == PREMIUM_TIER:
            skipped_premium += 1
            continue
        examples.append(
            Example(
                id=f"feedback/{log.request_id}",
                prompt=prompt,
                source="feedback",
                strong=1.0,
                weak=1.0 if feedback.positive else 0.0,
                weight=weight,
            )
        )
    return FeedbackExamples(tuple(examples), skipped_premium, skipped_no_prompt)
