"""Why this model, in words: the gateway's decision trace as a short list a person can read
(pure: no ORM, no clock). The page shows the trace itself only behind a "details" toggle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

Line = dict[str, str]  # {"label": ..., "text": ...}


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.0f} %"


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def decision_explain(
    trace: Mapping[str, Any] | None, *, model_ref: str = "", cached: bool = False
) -> list[Line]:
    """`model_ref` is the model that answered; it may be a fallback of the chain."""
    if not trace:
        return []
    lines: list[Line] = []

    def add(label: str, text: str) -> None:
        if text:
            lines.append({"label": label, "text": text})

    chain = [str(ref) for ref in trace.get("chain") or []]
    answered = model_ref or (chain[0] if chain else "")
    request = trace.get("request") or {}
    override = trace.get("override") or {}
    if override or trace.get("outcome") == "override":
        add("Model", f"{answered}, chosen by name (routing skipped)")
    elif answered and chain and answered != chain[0]:
        add("Model", f"{answered}, after {chain[0]} failed")
    else:
        add("Model", answered)
    add("Policy", str(trace.get("policy") or ""))
    add("Task", _task(request, trace.get("classification") or {}))
    router = trace.get("router") or {}
    if router:
        add("Why", _router_why(router))
        add("Router version", str(router.get("version") or ""))
        add("Rung", _rung(router))
    else:
        add("Complexity", str(request.get("complexity") or ""))
    if trace.get("rule"):
        add("Rule", f"the policy's rule for {trace['rule']}")
    add("Sticky", _sticky(trace.get("sticky")))
    if not override:
        rest = [ref for ref in chain if ref != answered]
        add("Fallbacks", " → ".join(rest) if rest else "none")
    guards = _guards(trace)
    if cached:
        guards.insert(0, "answered from the cache, no model was called")
    add("Guards", "; ".join(guards) if guards else "none applied")
    return lines


def _task(request: Mapping[str, Any], classification: Mapping[str, Any]) -> str:
    task = str(request.get("task_type") or "")
    source = classification.get("task_type_from")
    if task and source:
        return f"{task} (from the {source})"
    return task


def _router_why(router: Mapping[str, Any]) -> str:
    raw_probability, raw_threshold = router.get("probability"), router.get("threshold")
    if not (_number(raw_probability) and _number(raw_threshold)):
        return ""
    probability, threshold = float(raw_probability), float(raw_threshold)
    side = "at or above" if probability >= threshold else "below"
    return (
        f"the learned router gives a {_pct(probability)} chance that a premium model is needed, "
        f"{side} the policy's threshold of {_pct(threshold)}"
    )


def _rung(router: Mapping[str, Any]) -> str:
    rung, ladder = router.get("rung"), router.get("ladder") or []
    if not isinstance(rung, int) or not ladder:
        return ""
    tier = router.get("tier") or (ladder[rung] if 0 <= rung < len(ladder) else "")
    text = f"{rung + 1} of {len(ladder)} ({tier})"
    complexity = router.get("complexity")
    return f"{text}, treated as {complexity}" if complexity else text


def _sticky(sticky: Any) -> str:
    if not isinstance(sticky, Mapping):
        return ""
    kept = "kept the conversation's model" if sticky.get("kept") else "changed model"
    reason = sticky.get("reason")
    return f"{kept}: {reason}" if reason else kept


def _guards(trace: Mapping[str, Any]) -> list[str]:
    """State rules that matched, candidates left out and attempts that did not answer."""
    found = [
        f"{r.get('agent')} is {r.get('state')}, so {str(r.get('action', '')).replace('_', ' ')}"
        for r in trace.get("state_rules") or []
        if isinstance(r, Mapping) and r.get("matched")
    ]
    if trace.get("preference"):
        found.append(str(trace["preference"]).replace("_", " "))
    found += [
        f"{c.get('model')} left out ({c.get('reason')})"
        for c in trace.get("candidates") or []
        if isinstance(c, Mapping) and not c.get("kept")
    ]
    found += [
        f"{a.get('model')} {_attempt(a)}"
        for a in trace.get("attempts") or []
        if isinstance(a, Mapping) and a.get("outcome") != "ok"
    ]
    return found


def _attempt(attempt: Mapping[str, Any]) -> str:
    outcome = str(attempt.get("outcome") or "")
    if outcome.startswith("skipped"):
        return outcome
    message = attempt.get("message")
    return f"failed with {outcome}" + (f": {message}" if message else "")
