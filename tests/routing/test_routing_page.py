from __future__ import annotations

import pytest
from django.urls import reverse

from routing.config.presets import preset_load
from tests.routing.test_decisions import publish


@pytest.mark.django_db
def test_routing_page_shows_policies_rules_and_agent_states(admin_client, registry_rows):
    preset_load(name="cost-first")
    publish([("connectivity", "openai", "DEGRADED")])

    response = admin_client.get(reverse("routing:index"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "balanced" in page and "cost-first" in page
    assert "code / any" in page
    assert "openai:big" in page
    assert "connectivity = DISCONNECTED → Local models only" in page
    assert "budget = budget_constrained → Local or non-premium cloud only" in page
    assert '<td class="state state-degraded">DEGRADED</td>' in page


@pytest.mark.django_db
def test_routing_page_without_policies(admin_client):
    response = admin_client.get(reverse("routing:index"))

    assert "No routing policy is configured." in response.content.decode()
    assert "no sample yet" in response.content.decode()
