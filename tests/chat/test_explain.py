"""Why this model, in words: the decision trace as the list the chat page shows."""

from __future__ import annotations

from typing import Any

from chat.explain import decision_explain


def _trace(**changes: Any) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "version": 1,
        "policy": "balanced",
        "request": {"task_type": "code", "complexity": "moderate", "override": None},
        "classification": {"task_type_from": "classifier", "complexity_from": "router"},
        "router": {
            "mode": "learned",
            "version": "mf-2025-03",
            "probability": 0.42,
            "threshold": 0.3,
            "ladder": ["small_local", "standard", "premium"],
            "rung": 1,
            "tier": "standard",
            "complexity": "moderate",
        },
        "state_rules": [
            {
                "agent": "budget",
                "state": "budget_critical",
                "action": "free_only",
                "matched": False,
            },
            {"agent": "resource", "state": "CRITICAL", "action": "cloud_only", "matched": True},
        ],
        "rule": "code/*",
        "candidates": [
            {
                "model": "local:smol",
                "source": "tier",
                "kept": False,
                "reason": "resource CRITICAL: cloud models only",
            },
            {"model": "openai:mini", "source": "rule", "kept": True, "reason": ""},
            {"model": "fake:std", "source": "tier", "kept": True, "reason": ""},
        ],
        "preference": None,
        "sticky": None,
        "chain": ["openai:mini", "fake:std"],
        "outcome": "routed",
    }
    trace.update(changes)
    return trace


def test_a_routed_answer_is_explained_line_by_line() -> None:
    lines = decision_explain(_trace(), model_ref="openai:mini")

    assert lines == [
        {"label": "Model", "text": "openai:mini"},
        {"label": "Policy", "text": "balanced"},
        {"label": "Task", "text": "code (from the classifier)"},
        {
            "label": "Why",
            "text": "the learned router gives a 42 % chance that a premium model is needed, "
            "at or above the policy's threshold of 30 %",
        },
        {"label": "Router version", "text": "mf-2025-03"},
        {"label": "Rung", "text": "2 of 3 (standard), treated as moderate"},
        {"label": "Rule", "text": "the policy's rule for code/*"},
        {"label": "Fallbacks", "text": "fake:std"},
        {
            "label": "Guards",
            "text": "resource is CRITICAL, so cloud only; "
            "local:smol left out (resource CRITICAL: cloud models only)",
        },
    ]


def test_a_fallback_answer_names_the_model_that_failed_and_the_attempt() -> None:
    trace = _trace(
        attempts=[
            {
                "model": "openai:mini",
                "outcome": "SERVICE_UNAVAILABLE",
                "status": 503,
                "message": "busy",
            },
            {"model": "fake:std", "outcome": "ok", "status": 200, "message": ""},
        ],
        sticky={"previous_model_id": 3, "kept": False, "reason": "switched: disabled"},
    )

    lines = {line["label"]: line["text"] for line in decision_explain(trace, model_ref="fake:std")}

    assert lines["Model"] == "fake:std, after openai:mini failed"
    assert lines["Fallbacks"] == "openai:mini"
    assert lines["Sticky"] == "changed model: switched: disabled"
    assert lines["Guards"].endswith("; openai:mini failed with SERVICE_UNAVAILABLE: busy")


def test_without_the_router_complexity_is_shown_and_a_below_threshold_reads_below() -> None:
    heuristic = {
        line["label"]: line["text"]
        for line in decision_explain(_trace(router=None, candidates=[], state_rules=[]))
    }
    cheap = decision_explain(_trace(router={**_trace()["router"], "probability": 0.1}))

    assert heuristic["Complexity"] == "moderate"
    assert heuristic["Guards"] == "none applied"
    assert "Why" not in heuristic
    assert cheap[3]["text"].endswith(
        "10 % chance that a premium model is needed, below the policy's threshold of 30 %"
    )


def test_a_named_model_and_a_cached_answer() -> None:
    trace = _trace(
        router=None,
        override={"model": "fake:std", "context_fits": True},
        outcome="override",
        chain=["fake:std"],
        candidates=[],
        state_rules=[],
    )

    lines = {line["label"]: line["text"] for line in decision_explain(trace, cached=True)}

    assert lines["Model"] == "fake:std, chosen by name (routing skipped)"
    assert "Fallbacks" not in lines
    assert lines["Guards"] == "answered from the cache, no model was called"
    assert decision_explain({}) == []
    assert decision_explain(None) == []
