"""Agents as the seed designs describe them: a sync or async `check(request_context)` that reads
the request (its prompt, key and metadata) and runs for every request; `proceed: false` refuses
it, `target: local|cloud` is a recommendation that policies can match and the engine honours;
a sampled agent has its own `check_interval`; seed names are aliases of the built-in agents."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.utils import timezone

from analytics.models import RequestLog
from providers.adapters.types import Message
from providers.models import LLMModel, Provider
from routing import sampling
from routing.agents.base import BaseAgent
from routing.agents.resources import ResourceReadings
from routing.config.cache import SNAPSHOT_KEY
from routing.engine import policy_rules
from routing.models import AgentSample, ApiKey, RoutingPolicy, StateRule
from routing.pipeline.events import Caller, Failed, Finished, GatewayRequest
from routing.registry_edits import agent_switch
from routing.request_metadata import RequestMetadata
from routing.services import chat_stream
from tests.gateway.test_api_errors import chat, execute, native_error, openai_error
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import (
    chat_path,
    gateway_registry,
    new_key,
    settle_config,
    wait_rows,
)
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)

HERE = "tests.routing.test_agents_request"


class DailyBudgetAgent(BaseAgent):
    """The seed design's custom-agent example, as written there: a daily spending cap that
    sends requests to the local model once the day's estimate would pass it."""

    def __init__(self, daily_limit: float = 10.0):
        super().__init__("daily_budget", check_interval=60)
        self.daily_limit = daily_limit

    async def initialize(self):
        self.spent_today = 0.0
        self.day = date.today()

    async def check(self, request_context):
        if date.today() != self.day:
            self.spent_today, self.day = 0.0, date.today()
        estimated_cost = request_context.get("estimated_cost", 0.0)
        if self.spent_today + estimated_cost > self.daily_limit:
            return {
                "proceed": True,
                "state": "BUDGET_EXCEEDED",
                "target": "local",
                "reason": f"daily budget of ${self.daily_limit:.2f} reached",
                "metrics": {"spent_today": self.spent_today, "daily_limit": self.daily_limit},
            }
        self.spent_today += estimated_cost
        return {
            "proceed": True,
            "state": "WITHIN_BUDGET",
            "target": "cloud",
            "reason": "within the daily budget",
            "metrics": {"spent_today": self.spent_today, "daily_limit": self.daily_limit},
        }

    async def shutdown(self):
        self.spent_today = 0.0


class CentsADay(DailyBudgetAgent):
    """The seed's agent with a cap of 2.5 cents, configured the seed's way (its constructor)."""

    def __init__(self) -> None:
        super().__init__(daily_limit=0.025)


SEEN: list[dict[str, Any]] = []


class PromptGuard:
    """A sync request agent: refuses a destructive command, keeps one project on the local
    machine, and has no opinion otherwise."""

    name = "prompt_guard"

    def initialize(self) -> None:
        return None

    def check(self, request_context: Mapping[str, Any]) -> dict[str, Any]:
        SEEN.append(dict(request_context))
        if "rm -rf" in request_context["prompt"]:
            return {"proceed": False, "state": "dangerous", "reason": "a destructive command"}
        if request_context["metadata"]["project_id"] == "edge-lab":
            return {"proceed": True, "state": "lab", "target": "local", "reason": "lab project"}
        return {"proceed": True, "state": "ok", "target": "", "reason": ""}

    def shutdown(self) -> None:
        return None


class Sleeper(BaseAgent):
    name = "sleeper"

    async def check(self, request_context):
        await asyncio.sleep(5)
        return {"proceed": False, "state": "late", "target": "cloud"}


class Broken:
    name = "broken_request"

    def initialize(self) -> None:
        return None

    def check(self, request_context: Mapping[str, Any]) -> dict[str, Any]:
        raise RuntimeError("rules file missing")

    def shutdown(self) -> None:
        return None


CALLS: dict[str, int] = {}


class Hourly:
    """A sampled agent (keyword `check`) with its own interval."""

    name = "hourly"
    check_interval = 60

    def initialize(self) -> None:
        return None

    def check(self, **context: Any) -> dict[str, Any]:
        CALLS["hourly"] = CALLS.get("hourly", 0) + 1
        return {"state": "fine", "reason": f"call {CALLS['hourly']}"}

    def shutdown(self) -> None:
        return None


class SeedSampled(BaseAgent):
    """A seed-style async agent sampled in the background (`per_request = False`): the sampler
    hands it a context holding only `previous`."""

    per_request = False

    def __init__(self) -> None:
        super().__init__("seed_sampled", check_interval=5)

    async def initialize(self):
        self.loop = asyncio.get_running_loop()

    async def check(self, request_context):
        # The same loop as initialize: the agent's connections would live on it.
        same = asyncio.get_running_loop() is self.loop
        return {"state": "OK" if same else "other loop", "target": "edge", "reason": "idle"}


@pytest.fixture(autouse=True)
def fresh_agents() -> Iterator[None]:
    sampling._custom.clear()
    sampling._per_request.clear()
    SEEN.clear()
    CALLS.clear()
    yield
    sampling._custom.clear()
    sampling._per_request.clear()


@pytest.fixture
def quiet_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed readings at the probe boundary so the state does not depend on this machine."""
    monkeypatch.setattr(
        sampling._resource_monitor,
        "probe",
        lambda: ResourceReadings(cpu_pct=10.0, memory_pct=20.0, load_1m=0.1),
    )


def with_local(upstream: UpstreamServer) -> None:
    gateway_registry(upstream)  # every task to the cloud model alpha, then beta
    provider = Provider.objects.create(
        name="home", kind="openai_compatible", base_url=f"{upstream.url}/home/v1", locality="local"
    )
    LLMModel.objects.create(
        provider=provider,
        name="tiny",
        tier="small_local",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    settle_config()
    for name in ("alpha", "beta", "home"):
        upstream.reply("POST", chat_path(name), Reply.sse(openai_sse([f"from {name}"])))


def ask(text: str, **kwargs: Any) -> GatewayRequest:
    return GatewayRequest(
        messages=(Message("user", text),), entry_point="native", task_type="general", **kwargs
    )


async def answer(request: GatewayRequest) -> Finished | Failed:
    events = [event async for event in chat_stream(request)]
    last = events[-1]
    assert isinstance(last, Finished | Failed), last
    return last


def agent_entry(trace: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = [a for a in trace["agents"] if a["agent"] == name]
    return entry


async def test_the_seed_daily_budget_agent_runs_unchanged(
    upstream: UpstreamServer, settings: Any
) -> None:
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.CentsADay"]

    # Each request may cost up to 1,000 output tokens on alpha at $10/Mtok: about 1 cent.
    answers = [await answer(ask("hello there", max_tokens=1000)) for _ in range(3)]

    assert [a.model_ref for a in answers if isinstance(a, Finished)] == [
        "alpha:alpha-model",
        "alpha:alpha-model",
        "home:tiny",
    ]
    assert all(isinstance(a, Finished) for a in answers)
    first, _, third = (a.decision_trace for a in answers if isinstance(a, Finished))
    assert agent_entry(first, "daily_budget") | {"metrics": None} == {
        "agent": "daily_budget",
        "target": "",
        "state": "WITHIN_BUDGET",
        "reason": "within the daily budget",
        "metrics": None,
        "proceed": True,
        "recommend": "cloud",
        "source": "request",
    }
    exceeded = agent_entry(third, "daily_budget")
    assert (exceeded["state"], exceeded["recommend"], exceeded["reason"]) == (
        "BUDGET_EXCEEDED",
        "local",
        "daily budget of $0.03 reached",
    )
    # Two requests of 3 prompt tokens at $1.25/Mtok and 1,000 output tokens at $10/Mtok.
    assert exceeded["metrics"]["spent_today"] == pytest.approx(2 * (3 * 1.25 + 1000 * 10) / 1e6)
    assert third["recommendations"] == [
        {"agent": "daily_budget", "recommend": "local", "source": "request"}
    ]
    assert third["preference"] == "prefer_local"
    assert third["chain"] == ["home:tiny", "alpha:alpha-model", "beta:beta-model"]


def documented_daily_budget_agent() -> type:
    """The daily-budget agent as docs/routing.md shows it, loaded from the page itself and
    given the 2.5-cent cap, importable by dotted path like a user's module."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    (source,) = [
        block
        for block in re.findall(r"^```python\n(.*?)^```", doc, re.S | re.M)
        if "class DailyBudgetAgent" in block
    ]
    module = types.ModuleType("docs_routing_agents")
    exec(compile(source, "docs/routing.md", "exec"), module.__dict__)
    documented = module.__dict__["DailyBudgetAgent"]

    class Capped(documented):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__(daily_limit=0.025)

    module.__dict__["Capped"] = Capped
    Capped.__module__ = module.__name__
    sys.modules[module.__name__] = module
    return Capped


async def test_the_daily_budget_agent_of_the_docs_runs_as_written(
    upstream: UpstreamServer, settings: Any
) -> None:
    documented_daily_budget_agent()
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = ["docs_routing_agents.Capped"]

    answers = [await answer(ask("hello there", max_tokens=1000)) for _ in range(3)]

    assert [a.model_ref for a in answers if isinstance(a, Finished)] == [
        "alpha:alpha-model",
        "alpha:alpha-model",
        "home:tiny",
    ]
    third = answers[2]
    assert isinstance(third, Finished)
    entry = agent_entry(third.decision_trace, "daily_budget")
    assert (entry["state"], entry["recommend"], entry["source"]) == (
        "BUDGET_EXCEEDED",
        "local",
        "request",
    )


async def test_a_request_agent_reads_the_prompt_the_key_and_the_metadata(
    upstream: UpstreamServer, settings: Any
) -> None:
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.PromptGuard"]
    await database_sync_to_async(new_key)(rpm_limit=60)
    key = await ApiKey.objects.alatest("id")
    request = ask(
        "Summarise the meeting notes",
        caller=Caller(api_key_id=key.id, rpm_limit=60),
        metadata=RequestMetadata(end_user="u-42", project="apollo", tags=("beta", "eu")),
        session_id="s-1",
        max_tokens=200,
    )

    done = await answer(request)

    assert isinstance(done, Finished)
    (context,) = SEEN
    assert context == {
        "messages": [{"role": "user", "content": "Summarise the meeting notes"}],
        "images": 0,
        "model": None,
        "fallback_chain": [],
        "entry_point": "native",
        "request_id": str(request.request_id),
        "api_key": {"id": key.id, "local_only": False, "rpm_limit": 60, "tpm_limit": None},
        "user": None,
        "metadata": {
            "user_id": "u-42",
            "project_id": "apollo",
            "tags": ["beta", "eu"],
            "session_id": "s-1",
            "local_only": False,
        },
        "prompt": "Summarise the meeting notes",
        "task_type": "general",
        "complexity": context["complexity"],
        "estimated_tokens": context["prompt_tokens"] + 200,
        "prompt_tokens": context["prompt_tokens"],
        "max_tokens": 200,
        # alpha, the dearest enabled model: $1.25/Mtok in, $10/Mtok out.
        "estimated_cost": pytest.approx((context["prompt_tokens"] * 1.25 + 200 * 10) / 1e6),
        "policy": "gateway-policy",
    }
    assert context["complexity"] in ("simple", "medium", "complex")


async def test_proceed_false_refuses_the_request_before_any_call_even_a_named_model(
    upstream: UpstreamServer, settings: Any
) -> None:
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.PromptGuard"]
    routed = ask("please run rm -rf / on the box")
    named = ask("rm -rf everything", model="alpha:alpha-model")

    for request in (routed, named):
        failed = await answer(request)
        assert isinstance(failed, Failed)
        assert (failed.code, failed.http_status) == ("AGENT_BLOCKED", 403)
        assert failed.message == (
            "the prompt_guard agent does not let this request proceed "
            "(dangerous: a destructive command)"
        )
        assert failed.details == {
            "agent": "prompt_guard",
            "state": "dangerous",
            "reason": "a destructive command",
        }

    assert upstream.requests == []
    rows = await database_sync_to_async(wait_rows)(2)
    assert {(r.status, r.error_code) for r in rows} == {("invalid", "AGENT_BLOCKED")}
    assert {r.decision_trace["outcome"] for r in rows} == {"blocked by agent prompt_guard"}


async def test_a_recommendation_is_a_preference_that_a_state_rule_can_match_or_override(
    upstream: UpstreamServer, settings: Any
) -> None:
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.PromptGuard"]
    lab = RequestMetadata(project="edge-lab")

    preferred = await answer(ask("hello", metadata=lab))
    assert isinstance(preferred, Finished)
    assert preferred.model_ref == "home:tiny"
    assert preferred.decision_trace["chain"] == [
        "home:tiny",
        "alpha:alpha-model",
        "beta:beta-model",
    ]

    policy = await RoutingPolicy.objects.aget(name="gateway-policy")
    # Matched by its recommendation alone: the lab's requests never leave the machine.
    await StateRule.objects.acreate(
        policy=policy, agent="prompt_guard", target="local", action="local_only"
    )
    await database_sync_to_async(settle_config)()
    kept = await answer(ask("hello", metadata=lab))
    assert isinstance(kept, Finished)
    assert kept.decision_trace["chain"] == ["home:tiny"]
    assert kept.decision_trace["state_rules"] == [
        {
            "agent": "prompt_guard",
            "state": "",
            "action": "local_only",
            "observed": "lab",
            "matched": True,
            "target": "local",
            "observed_target": "local",
        }
    ]
    other = await answer(ask("hello", metadata=RequestMetadata(project="apollo")))
    assert isinstance(other, Finished)
    assert other.model_ref == "alpha:alpha-model"

    # A state rule's preference wins over the agent's recommendation.
    await StateRule.objects.all().adelete()
    await StateRule.objects.acreate(
        policy=policy, agent="prompt_guard", state="lab", action="prefer_cloud"
    )
    await database_sync_to_async(settle_config)()
    overridden = await answer(ask("hello", metadata=lab))
    assert isinstance(overridden, Finished)
    assert overridden.model_ref == "alpha:alpha-model"
    assert overridden.decision_trace["preference"] == "prefer_cloud"


async def test_a_slow_or_failing_request_agent_is_unknown_and_neither_blocks_nor_steers(
    upstream: UpstreamServer, settings: Any
) -> None:
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.Sleeper", f"{HERE}.Broken"]
    settings.ORCHESTRATOR_REQUEST_AGENT_TIMEOUT_MS = 100
    loop = asyncio.get_running_loop()

    started = loop.time()
    done = await answer(ask("hello"))
    elapsed = loop.time() - started

    assert isinstance(done, Finished)
    assert done.model_ref == "alpha:alpha-model"
    assert elapsed < 4  # the five-second check was cut, not waited for
    sleeper = agent_entry(done.decision_trace, "sleeper")
    assert (sleeper["state"], sleeper["reason"], sleeper["proceed"], sleeper["recommend"]) == (
        "unknown",
        "check timed out after 100 ms",
        True,
        "",
    )
    broken = agent_entry(done.decision_trace, "broken_request")
    assert (broken["state"], broken["reason"]) == ("unknown", "check failed: rules file missing")


async def test_a_request_agent_switched_off_at_runtime_is_not_asked(
    upstream: UpstreamServer, settings: Any
) -> None:
    await database_sync_to_async(with_local)(upstream)
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.PromptGuard"]
    await database_sync_to_async(agent_switch)(
        caller=Caller(is_staff=True), name="prompt_guard", enabled=False
    )
    await database_sync_to_async(settle_config)()

    done = await answer(ask("rm -rf /tmp/cache"))

    assert isinstance(done, Finished)
    assert SEEN == []
    assert agent_entry(done.decision_trace, "prompt_guard")["reason"] == "disabled"


def test_each_sampled_agent_is_checked_at_its_own_interval(
    registry_rows: Any, quiet_resources: Any, settings: Any
) -> None:
    settings.ORCHESTRATOR_AGENTS = [f"{HERE}.Hourly", f"{HERE}.SeedSampled"]
    settings.ORCHESTRATOR_AGENT_INTERVAL_S = 15
    t0 = timezone.now()

    for seconds in (0, 20, 40, 59, 60):
        sampling.agents_sample(now=t0 + timedelta(seconds=seconds))

    # Hourly (60 s) at 0 and 59 (within a tenth of its interval); resources (15 s) at 0, 20,
    # 40 and 59, not at 60 (one second after 59).
    assert list(AgentSample.objects.filter(agent="hourly").values_list("reason", flat=True)) == [
        "call 2",
        "call 1",
    ]
    assert AgentSample.objects.filter(agent="resources").count() == 4
    seed = AgentSample.objects.filter(agent="seed_sampled").first()
    assert seed is not None and (seed.state, seed.reason) == ("OK", "idle")
    snapshot = cache.get(SNAPSHOT_KEY)
    hourly = next(e for e in snapshot["agents"] if e["agent"] == "hourly")
    assert (hourly["interval_s"], hourly["sampled_at"]) == (
        60.0,
        (t0 + timedelta(seconds=59)).isoformat(),
    )
    seed_entry = next(e for e in snapshot["agents"] if e["agent"] == "seed_sampled")
    assert (seed_entry["recommend"], seed_entry["target"]) == ("local", "")
    # Stale after three of its own intervals, not three of the global one.
    later = sampling.agents_snapshot_current(now=t0 + timedelta(seconds=59 + 170))
    assert later.overall("hourly") == "fine"
    assert later.overall("resources") == "unknown"
    gone = sampling.agents_snapshot_current(now=t0 + timedelta(seconds=59 + 181))
    assert gone.overall("hourly") == "unknown"
    assert sampling.sampling_tick_s() == 5.0


def test_seed_names_are_aliases_of_the_built_in_agents(registry_rows: Any) -> None:
    policy = RoutingPolicy.objects.get(is_default=True)
    rule = StateRule(policy=policy, agent="resource_monitor", state="CRITICAL", action="block")
    rule.full_clean()
    assert rule.agent == "resources"
    bad = StateRule(policy=policy, agent="connectivity_agent", state="SLOW", action="block")
    with pytest.raises(Exception, match="unknown state 'SLOW' for agent 'connectivity'"):
        bad.full_clean()
    neither = StateRule(policy=policy, agent="resources", action="block")
    with pytest.raises(Exception, match="give a state, a target, or both"):
        neither.full_clean()

    thresholds = {"resource_monitor": {"cpu_pct": 70}}
    assert policy_rules.thresholds_errors(thresholds) == []
    assert policy_rules.thresholds_for(thresholds, "resources").cpu_pct == 70

    switched = agent_switch(caller=Caller(is_staff=True), name="budget_agent", enabled=False)
    assert (switched.name, switched.enabled) == ("budget", False)


def test_the_native_api_answers_agent_checks_by_name_and_each_door_refuses_a_block(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    with_local(upstream)
    RoutingPolicy.objects.filter(name="gateway-policy").update(agents=[f"{HERE}.PromptGuard"])
    settle_config()
    key = new_key()

    ok = execute(live_server_url, key, {"prompt": "hello", "metadata": {"project_id": "edge-lab"}})
    native_blocked = execute(live_server_url, key, {"prompt": "rm -rf /"})
    v1_blocked = chat(
        live_server_url,
        key,
        {"model": "auto", "messages": [{"role": "user", "content": "rm -rf /"}]},
    )

    assert ok.status_code == 200, ok.text
    checks = ok.json()["agent_checks"]
    assert checks["prompt_guard"] == {
        "proceed": True,
        "state": "lab",
        "target": "local",
        "reason": "lab project",
        "metrics": {},
        "source": "request",
        "targets": {},
    }
    assert set(checks) == {"resources", "connectivity", "budget", "prompt_guard"}
    assert ok.json()["model_id"] == "home:tiny"
    assert native_blocked.status_code == 403
    error = native_error(native_blocked)
    assert (error["code"], error["details"]["agent"]) == ("AGENT_BLOCKED", "prompt_guard")
    assert v1_blocked.status_code == 403
    assert openai_error(v1_blocked)["type"] == "permission_error"
    assert [r.path for r in upstream.requests] == [chat_path("home")]
    rows = wait_rows(3)
    assert sorted(r.error_code for r in rows) == ["", "AGENT_BLOCKED", "AGENT_BLOCKED"]
    assert RequestLog.objects.filter(error_code="AGENT_BLOCKED", status="invalid").count() == 2
