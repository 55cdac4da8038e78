from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from routing import sampling
from routing.agents.resources import ResourceReadings
from routing.models import AgentSample, RoutingPolicy
from routing.tasks import agents_sample as agents_sample_task


class DiskAgent:
    """A custom agent as a user would write one (see docs/routing.md)."""

    name = "disk"
    initialized = 0

    def initialize(self) -> None:
        DiskAgent.initialized += 1

    def check(self, **context: Any) -> dict[str, Any]:
        return {
            "proceed": True,
            "state": "ok",
            "target": "",
            "reason": "plenty",
            "metrics": {"free_gb": 12},
        }

    def shutdown(self) -> None:
        return None


class BrokenAgent:
    name = "broken"

    def initialize(self) -> None:
        return None

    def check(self, **context: Any) -> dict[str, Any]:
        raise OSError("sensor gone")

    def shutdown(self) -> None:
        return None


@pytest.fixture
def quiet_resources(monkeypatch):
    """Fixed readings at the probe boundary so the state does not depend on this machine."""
    values = {"cpu": 10.0}
    monkeypatch.setattr(
        sampling._resource_monitor,
        "probe",
        lambda: ResourceReadings(cpu_pct=values["cpu"], memory_pct=20.0, load_1m=0.1),
    )
    return values


@pytest.mark.django_db
def test_sample_stores_rows_and_publishes_snapshot(registry_rows, quiet_resources, settings):
    settings.ORCHESTRATOR_AGENTS = ["tests.routing.test_sampling.DiskAgent"]
    now = timezone.now()

    rows = sampling.agents_sample(now=now)

    stored = sorted(AgentSample.objects.values_list("agent", "target", "state", "ok"))
    assert stored == [
        ("budget", "", "no_budget", True),
        ("connectivity", "", "DISCONNECTED", True),
        ("connectivity", "openai", "DISCONNECTED", True),
        ("disk", "", "ok", True),
        ("resources", "", "AVAILABLE", True),
    ]
    assert len(rows) == 5
    snapshot = sampling.agents_snapshot_current(now=now + timedelta(seconds=1))
    assert snapshot.overall("disk") == "ok"
    assert snapshot.target_state("connectivity", "openai") == "DISCONNECTED"
    assert snapshot.taken_at == now.isoformat()


@pytest.mark.django_db
def test_custom_agent_is_initialized_once_per_process(registry_rows, quiet_resources, settings):
    settings.ORCHESTRATOR_AGENTS = ["tests.routing.test_sampling.DiskAgent"]
    sampling._custom.clear()
    DiskAgent.initialized = 0

    sampling.agents_sample()
    sampling.agents_sample()

    assert DiskAgent.initialized == 1


@pytest.mark.django_db
def test_policy_names_a_custom_agent(registry_rows, quiet_resources):
    RoutingPolicy.objects.filter(name="balanced").update(
        agents=["tests.routing.test_sampling.DiskAgent"]
    )

    sampling.agents_sample()

    assert AgentSample.objects.filter(agent="disk").count() == 1


@pytest.mark.django_db
def test_failing_agent_is_an_unknown_sample(registry_rows, quiet_resources, settings):
    settings.ORCHESTRATOR_AGENTS = ["tests.routing.test_sampling.BrokenAgent"]

    sampling.agents_sample()

    row = AgentSample.objects.get(agent="broken")
    assert (row.state, row.ok, row.reason) == ("unknown", False, "check failed: sensor gone")
    snapshot = sampling.agents_snapshot_current(now=timezone.now())
    broken = next(s for s in snapshot.states if s.agent == "broken")
    assert (broken.state, broken.reason) == ("unknown", "check failed: sensor gone")


@pytest.mark.django_db
def test_hysteresis_carries_across_samples(registry_rows, quiet_resources):
    states = []
    for cpu in (81.0, 78.0, 74.0):
        quiet_resources["cpu"] = cpu
        sampling.agents_sample(every=True)
        states.append(sampling.agents_snapshot_current(now=timezone.now()).overall("resources"))

    assert states == ["CONSTRAINED", "CONSTRAINED", "AVAILABLE"]


@pytest.mark.django_db
def test_policy_thresholds_reach_the_agents(registry_rows, quiet_resources):
    RoutingPolicy.objects.filter(name="balanced").update(thresholds={"resources": {"cpu_pct": 5}})

    sampling.agents_sample()

    assert AgentSample.objects.get(agent="resources").state == "CONSTRAINED"


@pytest.mark.django_db
def test_samples_older_than_retention_are_dropped(registry_rows, quiet_resources, settings):
    settings.ORCHESTRATOR_AGENT_RETENTION_H = 2
    now = timezone.now()
    AgentSample.objects.create(
        agent="resources", state="AVAILABLE", sampled_at=now - timedelta(hours=3)
    )
    kept = AgentSample.objects.create(
        agent="resources", state="AVAILABLE", sampled_at=now - timedelta(hours=1)
    )

    sampling.agents_sample(now=now)

    assert AgentSample.objects.filter(sampled_at__lt=now).get() == kept
    assert AgentSample.objects.filter(sampled_at=now).count() == 4


@pytest.mark.django_db
def test_beat_task_samples(registry_rows, quiet_resources):
    result = agents_sample_task.delay()

    assert result.get() == 4
    assert AgentSample.objects.count() == 4


class FakeThread:
    """Records the loop the sampler would start, without running it."""

    started: list[str] = []

    def __init__(self, *, target, args, name, daemon):
        self.name, self.coroutine = name, args[0]

    def start(self) -> None:
        FakeThread.started.append(self.name)
        self.coroutine.close()


def test_web_mode_starts_one_background_loop(settings, monkeypatch):
    FakeThread.started = []
    monkeypatch.setattr(sampling, "_loop_started", False)
    monkeypatch.setattr(sampling.threading, "Thread", FakeThread)
    settings.ORCHESTRATOR_AGENT_SAMPLING = "beat"
    assert sampling.background_sampling_ensure() is False

    settings.ORCHESTRATOR_AGENT_SAMPLING = "web"
    assert sampling.background_sampling_ensure() is True
    assert sampling.background_sampling_ensure() is False
    assert FakeThread.started == ["routing-agents"]
