"""The routing engine: a pure function from a request and the state of the world to a ranked
chain of models and the reasons for it. No I/O, no ORM, no clock: the same inputs replay to the
same decision. `route.decide` is the entry point, `ranking` picks and orders the candidates,
`limits` names a request too long for any window, `values` holds the frozen values it takes and
returns, and `taxonomy`, `classify` and `policy_rules` are the vocabulary, the heuristic prompt
classifier and the validation of a policy's JSON parts. The learned router (`routing.router`)
plugs in here: its verdict arrives as `RouteRequest.router` and the policy's knob as
`PolicySpec.router`, and `ranking.router_rung` turns them into the rung of tiers to try.
The names below load on first use, so that `routing.models` (which reads `taxonomy` and
`policy_rules`) does not import the decision code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routing.engine.limits import token_limit_exceeded
    from routing.engine.ranking import (
        CONTEXT_REFUSAL,
        DEFAULT_TIER_LADDER,
        FILTER_ACTIONS,
        RungBalancer,
    )
    from routing.engine.route import TRACE_VERSION, decide, disabled_reason, privacy_why

__all__ = [
    "CONTEXT_REFUSAL",
    "DEFAULT_TIER_LADDER",
    "FILTER_ACTIONS",
    "TRACE_VERSION",
    "RungBalancer",
    "decide",
    "disabled_reason",
    "privacy_why",
    "token_limit_exceeded",
]

_HOMES = {
    "CONTEXT_REFUSAL": "ranking",
    "DEFAULT_TIER_LADDER": "ranking",
    "FILTER_ACTIONS": "ranking",
    "RungBalancer": "ranking",
    "TRACE_VERSION": "route",
    "decide": "route",
    "disabled_reason": "route",
    "privacy_why": "route",
    "token_limit_exceeded": "limits",
}


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(f"{__name__}.{home}"), name)
        globals()[name] = value
        return value
