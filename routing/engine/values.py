"""The frozen values the routing engine takes and returns.

`RouteDecision.chain` is what execution walks: the first candidate is tried first, each next one
after a retryable failure. `RouteDecision.trace` is plain JSON (str, int, bool, None, list, dict)
and explains every agent state, rule and candidate considered; the same inputs give the same trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from routing.privacy import PrivacySpec
from routing.router.ladder import DEFAULT_KNOB, Knob

UNKNOWN = "unknown"
JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model of the registry as the engine sees it (never an ORM instance)."""

    id: int
    provider_name: str
    provider_kind: str
    name: str
    locality: str
    tier: str
    input_price_per_mtok_usd: Decimal | None
    output_price_per_mtok_usd: Decimal | None
    cached_input_price_per_mtok_usd: Decimal | None
    context_window: int
    max_output_tokens: int
    task_strengths: tuple[str, ...] = ()
    accepts_images: bool = False
    accepts_tools: bool = False
    accepts_json_output: bool = False
    embedding_dimensions: int | None = None
    """The length of the vectors the model embeds text into; None for chat models."""
    answers_chat: bool = True
    """False for embedding-only models: chat routing never picks them."""
    enabled: bool = True
    is_baseline: bool = False
    provider_enabled: bool = True
    """Whether the provider is on (`enabled` is false when either is off)."""

    @property
    def ref(self) -> str:
        return f"{self.provider_name}:{self.name}"

    @property
    def is_local(self) -> bool:
        return self.locality == "local"

    @property
    def is_free(self) -> bool:
        """Local models and models whose known prices are all zero; an unknown price is not free."""
        if self.is_local:
            return True
        prices = (self.input_price_per_mtok_usd, self.output_price_per_mtok_usd)
        return all(p is not None and p == 0 for p in prices)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    models: tuple[ModelSpec, ...]
    by_id: Mapping[int, ModelSpec] = field(default_factory=dict)
    by_ref: Mapping[str, ModelSpec] = field(default_factory=dict)
    by_tier: Mapping[str, tuple[ModelSpec, ...]] = field(default_factory=dict)
    tier_ids: Mapping[str, frozenset[int]] = field(default_factory=dict)
    _by_tier_task: dict[tuple[str, str], tuple[ModelSpec, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def tier_for_task(self, tier: str, task_type: str) -> tuple[ModelSpec, ...]:
        """Models of a tier, those strong at the task first (computed once per pair)."""
        key = (tier, task_type)
        found = self._by_tier_task.get(key)
        if found is None:
            models = self.by_tier.get(tier, ())
            found = tuple(m for m in models if task_type in m.task_strengths) + tuple(
                m for m in models if task_type not in m.task_strengths
            )
            self._by_tier_task[key] = found
        return found

    @classmethod
    def build(cls, models: tuple[ModelSpec, ...]) -> RegistrySnapshot:
        tiers: dict[str, list[ModelSpec]] = {}
        # Within a tier the cheaper known price goes first; unknown prices go last.
        for model in sorted(models, key=_price_order):
            tiers.setdefault(model.tier, []).append(model)
        return cls(
            models=models,
            by_id={m.id: m for m in models},
            by_ref={m.ref: m for m in models},
            by_tier={t: tuple(ms) for t, ms in tiers.items()},
            tier_ids={t: frozenset(m.id for m in ms) for t, ms in tiers.items()},
        )


def _price_order(model: ModelSpec) -> tuple[bool, Decimal, str]:
    price = model.input_price_per_mtok_usd
    return (price is None, price if price is not None else Decimal(0), model.ref)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    task_type: str
    complexity: str  # "" matches any complexity
    primary_id: int | None
    fallback_ids: tuple[int, ...] = ()
    tiers: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.task_type}/{self.complexity or '*'}"


@dataclass(frozen=True, slots=True)
class StateRuleSpec:
    """Matches an agent's overall state (`state`, "" for any) and its recommendation
    (`target`: "local", "cloud", "" for any); at least one of them is set."""

    agent: str
    state: str
    action: str
    target: str = ""

    def matches(self, observed: AgentState | None) -> bool:
        state = observed.state if observed else UNKNOWN
        recommend = observed.recommend if observed else ""
        return (not self.state or self.state == state) and (
            not self.target or self.target == recommend
        )


BALANCE_STRATEGIES = ("none", "round_robin", "least_latency", "weighted")


@dataclass(frozen=True, slots=True)
class BalanceSpec:
    """How a policy spreads requests among the models of one rung (same tier, same strength
    at the task). "none" keeps the registry's order: the cheapest first."""

    strategy: str = "none"
    weights: Mapping[str, int] = field(default_factory=dict)
    """Weighted: "provider:model" to its share (a model not named weighs 1)."""

    @classmethod
    def of(cls, router: Mapping[str, Any] | None) -> BalanceSpec:
        """From a policy's `router` JSON (validated by policy_rules.router_errors)."""
        value = (router or {}).get("balance") or {}
        return cls(
            strategy=str(value.get("strategy", "none")),
            weights={str(k): int(v) for k, v in (value.get("weights") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Rung:
    """The models of one rung a decision balances among, in the registry's order."""

    key: str
    """"<policy>/<tier>/<task>" (or "…/other" for the models not strong at the task)."""
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RungOrder:
    """A rung's models in the order to try them, and how that order was chosen (trace)."""

    order: tuple[str, ...]
    trace: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    name: str
    tier_ladder: Mapping[str, tuple[str, ...]]
    rules: tuple[RuleSpec, ...] = ()
    state_rules: tuple[StateRuleSpec, ...] = ()
    sticky_sessions: bool = True
    chain_limit: int = 5
    router: Knob | None = DEFAULT_KNOB  # None: the complexity heuristic picks the tiers
    balance: BalanceSpec = field(default_factory=BalanceSpec)
    response_cache: str = "deterministic"  # routing.guards.response_cache.CACHE_MODES
    privacy: PrivacySpec = field(default_factory=PrivacySpec)
    """The built-in privacy agent: on or off, and its detectors (routing/privacy.py)."""


@dataclass(frozen=True, slots=True)
class RouterVerdict:
    """What the learned router said of a prompt, and the threshold the policy's knob set."""

    version: str
    probability: float
    threshold: float
    quality_target_pct: float | None


@dataclass(frozen=True, slots=True)
class AgentState:
    """The latest state of one agent for one target ("" is the agent's overall state).
    `proceed` false on an overall state refuses the request; `recommend` ("local", "cloud",
    "") is where the agent would run it. `source` is "sampled" (the background snapshot) or
    "request" (a request agent's check of this request)."""

    agent: str
    state: str
    target: str = ""
    reason: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    proceed: bool = True
    recommend: str = ""
    source: str = "sampled"

    def as_json(self) -> JsonDict:
        return {
            "agent": self.agent,
            "target": self.target,
            "state": self.state,
            "reason": self.reason,
            "metrics": dict(self.metrics),
            "proceed": self.proceed,
            "recommend": self.recommend,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    states: tuple[AgentState, ...] = ()
    taken_at: str | None = None

    def overall(self, agent: str) -> str:
        found = self.overall_of(agent)
        return found.state if found else UNKNOWN

    def overall_of(self, agent: str) -> AgentState | None:
        for state in self.states:
            if state.agent == agent and not state.target:
                return state
        return None

    def with_states(self, states: tuple[AgentState, ...]) -> AgentSnapshot:
        """This snapshot plus `states` (a request agent's checks), which replace any sampled
        entry of the same agent."""
        if not states:
            return self
        names = {s.agent for s in states}
        kept = tuple(s for s in self.states if s.agent not in names)
        return AgentSnapshot(kept + states, taken_at=self.taken_at)

    def target_state(self, agent: str, target: str) -> str | None:
        for state in self.states:
            if state.agent == agent and state.target == target:
                return state.state
        return None


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the caller asks for. Task type and complexity are already resolved (see classify)."""

    task_type: str
    complexity: str
    prompt_tokens: int
    max_output_tokens: int = 0
    override: str | None = None  # "provider:model"
    fallback_chain: tuple[str, ...] = ()
    """The caller's own models to try after `override` (or alone), as "provider:model"."""
    sticky_model_id: int | None = None  # the model the conversation used last
    classification: Mapping[str, Any] = field(default_factory=dict)
    router: RouterVerdict | None = None  # None: complexity picks the tiers
    local_only: tuple[str, ...] = ()
    """Who asked to keep the request on local models: "api_key", "request" (the caller's flag)."""
    privacy_triggered: tuple[str, ...] = ()
    """The privacy agent's detectors that fired on the prompt (routing/privacy.py)."""
    images: int = 0
    """Images the messages carry: only models that accept images can answer."""
    needs: tuple[str, ...] = ()
    """The capabilities the request needs (names of CAPABILITIES: "tools", "json_output"):
    only models that have them can answer."""

    @property
    def private(self) -> bool:
        """Whether the request may only go to local models."""
        return bool(self.local_only or self.privacy_triggered)


@dataclass(frozen=True, slots=True)
class StickyInfo:
    previous_model_id: int
    kept: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RouteDecision:
    chain: tuple[ModelSpec, ...]
    task_type: str
    complexity: str
    policy_name: str
    override: bool
    sticky: StickyInfo | None
    trace: JsonDict
    blocked_reason: str = ""

    @property
    def primary(self) -> ModelSpec | None:
        return self.chain[0] if self.chain else None


class RoutingError(ValueError):
    """The request cannot be routed as asked (an override naming an unknown model). `field`
    names the request's field at fault when it is not obvious (`fallback_chain[1]`)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownModel(RoutingError):
    """The caller named a model (or policy) that is not in the registry. A door whose protocol
    has its own answer for that (Ollama's and Gemini's 404) tells it by this type, not by the
    message's words."""

    def __init__(self, message: str, *, model: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.model = model


class ModelUnavailable(RoutingError):
    """A model the caller named exists but cannot answer: it or its provider is disabled.
    Not the caller's typo (MODEL_UNAVAILABLE, not INVALID_REQUEST); `decision` holds the trace."""

    def __init__(
        self, decision: RouteDecision, *, model: str, reason: str, field: str | None = None
    ) -> None:
        super().__init__(f"model {model!r} is unavailable: {reason}", field=field)
        self.decision = decision
        self.model = model
        self.reason = reason


class TokenLimitExceeded(RoutingError):
    """The prompt plus the requested output fits no model the request may use: every candidate
    was refused for its context window, or the named model's window is too small. The caller's
    mistake (a 400), not an outage: a retry cannot fix it."""

    def __init__(
        self, decision: RouteDecision, *, needed_tokens: int, largest_window: int, target: str
    ) -> None:
        super().__init__(
            f"this request needs {needed_tokens} tokens (the prompt plus max_tokens), more than "
            f"the context window of {target} ({largest_window} tokens); shorten the prompt or "
            "lower max_tokens"
        )
        self.decision = decision
        self.needed_tokens = needed_tokens
        self.largest_window = largest_window


class ImagesRefused(RoutingError):
    """A request that carries images and that no model able to read them can answer: none is
    enabled (routed), or the model the caller named (or every model of its chain) does not
    accept images."""

    code = "IMAGES_NOT_SUPPORTED"

    def __init__(self, decision: RouteDecision, *, message: str) -> None:
        super().__init__(message)
        self.decision = decision


@dataclass(frozen=True, slots=True)
class Capability:
    """Something a request may need that only models marked for it can do: the model's flag,
    the request's field that asks for it and the code of the refusal when no model can."""

    name: str
    flag: str
    field: str
    code: str
    refusal: str


CAPABILITIES: Mapping[str, Capability] = {
    "tools": Capability(
        name="tools",
        flag="accepts_tools",
        field="tools",
        code="TOOLS_NOT_SUPPORTED",
        refusal="does not accept tools",
    ),
    "json_output": Capability(
        name="json_output",
        flag="accepts_json_output",
        field="response_format",
        code="JSON_OUTPUT_NOT_SUPPORTED",
        refusal="does not accept JSON output",
    ),
}


def capability_missing(model: ModelSpec, request: RouteRequest) -> Capability | None:
    """The first capability the request needs that the model lacks."""
    for name in request.needs:
        capability = CAPABILITIES[name]
        if not getattr(model, capability.flag):
            return capability
    return None


class CapabilityRefused(RoutingError):
    """A request that needs tools (or a JSON answer) that no model able to give it can answer:
    none is enabled (routed), or the model the caller named (or every model of its chain) lacks
    the capability. `code` names it (TOOLS_NOT_SUPPORTED, JSON_OUTPUT_NOT_SUPPORTED) and
    `field` the request's field that asked for it."""

    def __init__(self, decision: RouteDecision, *, capability: Capability, message: str) -> None:
        super().__init__(message, field=capability.field)
        self.code = capability.code
        self.decision = decision


class PrivacyRefused(RoutingError):
    """A request kept on local models (the privacy agent fired, or the key or the request says
    local only) that no local model can answer, or that names a cloud model. Never carries the
    prompt's text: only which detectors fired and who asked."""

    code = "PRIVACY_NO_LOCAL_MODEL"

    def __init__(self, decision: RouteDecision, *, message: str) -> None:
        super().__init__(message)
        self.decision = decision
        privacy = decision.trace.get("privacy") or {}
        self.triggered = tuple(privacy.get("triggered") or ())
        self.local_only = tuple(privacy.get("local_only") or ())


class AgentBlocked(RoutingError):
    """An agent's check said `proceed: false` for this request: refused before any model is
    called, whatever the request named."""

    code = "AGENT_BLOCKED"

    def __init__(self, decision: RouteDecision, *, agent: str, state: str, reason: str) -> None:
        super().__init__(
            f"the {agent} agent does not let this request proceed ({state}"
            + (f": {reason})" if reason else ")")
        )
        self.decision = decision
        self.agent = agent
        self.state = state
        self.reason = reason
