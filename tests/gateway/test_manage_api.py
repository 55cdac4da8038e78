"""The management API (`/api/manage/`, gateway/manage.py): staff only, every write audited in
its own transaction, the routing configuration reloaded after each change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from gateway.apikeys import apikey_create
from providers.models import LLMModel, Provider
from providers.services import provider_credential_set
from routing import sampling
from routing.agents.resources import ResourceReadings
from routing.config import cache as config_cache
from routing.engine.values import ModelUnavailable
from routing.models import AgentSample, AuditEvent, RoutingPolicy
from routing.pipeline.route import route_decide

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "sk-manage-test-3f9c1a7e5b2d4c6e8a0b-qrst"


@pytest.fixture(autouse=True)
def _fresh_routing_cache(settings) -> Iterator[None]:
    settings.ORCHESTRATOR_AGENT_SAMPLING = "off"
    cache.delete_many([config_cache.VERSION_KEY, sampling.SNAPSHOT_KEY])
    config_cache._memo = None
    config_cache.shared_forget()
    yield
    cache.delete_many([config_cache.VERSION_KEY, sampling.SNAPSHOT_KEY])
    config_cache._memo = None
    config_cache.shared_forget()


def keyed(*, staff: bool | None) -> tuple[Client, Any]:
    """A client with a fresh key: its owner staff, not staff, or (None) no owner at all."""
    owner = None
    if staff is not None:
        owner = get_user_model().objects.create_user(f"u{staff}", is_staff=staff).username
    created = apikey_create(name="ops", owner_username=owner)
    return Client(headers={"Authorization": f"Bearer {created.plaintext}"}), created.api_key


@pytest.fixture
def staff() -> Client:
    return keyed(staff=True)[0]


def post(client: Client, path: str, body: object) -> Any:
    return client.post(f"/api/manage{path}", body, content_type="application/json")


def patch(client: Client, path: str, body: object) -> Any:
    return client.patch(f"/api/manage{path}", body, content_type="application/json")


def refused(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def fields(response: Any) -> list[str]:
    error = refused(response, 400)
    assert error["code"] == "INVALID_REQUEST"
    return [e["field"] for e in error["details"]["errors"]]


def local_provider() -> Provider:
    return Provider.objects.create(
        name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", locality="local"
    )


PROVIDER = {
    "name": "acme",
    "kind": "openai_compatible",
    "base_url": "https://llm.acme.test/v1",
    "locality": "cloud",
    "credential_env": "ACME_API_KEY",
}


def test_a_staff_key_creates_lists_and_changes_a_provider_each_write_audited() -> None:
    client, key = keyed(staff=True)

    created = post(client, "/providers", PROVIDER)
    changed = patch(client, "/providers/acme", {"enabled": False, "read_timeout_s": 30})
    listed = client.get("/api/manage/providers")

    assert created.status_code == 201, created.content
    assert created.json()["credential_state"] == "not set (environment variable ACME_API_KEY)"
    assert changed.status_code == 200, changed.content
    assert (changed.json()["enabled"], changed.json()["read_timeout_s"]) == (False, 30.0)
    assert [p["name"] for p in listed.json()["providers"]] == ["acme"]
    provider = Provider.objects.get(name="acme")
    assert (provider.enabled, provider.read_timeout_s) == (False, 30.0)
    first, second = AuditEvent.objects.order_by("id")
    assert (first.action, first.target_kind, first.target_ref) == ("create", "provider", "acme")
    assert (first.user_id, first.api_key_id) == (key.owner_id, key.pk)
    assert first.changes == {
        "name": {"old": None, "new": "acme"},
        "kind": {"old": None, "new": "openai_compatible"},
        "base_url": {"old": None, "new": "https://llm.acme.test/v1"},
        "locality": {"old": None, "new": "cloud"},
        "credential_env": {"old": None, "new": "ACME_API_KEY"},
        "enabled": {"old": None, "new": True},
        "follows_credential_env": {"old": None, "new": False},
        "connect_timeout_s": {"old": None, "new": 5.0},
        "read_timeout_s": {"old": None, "new": 120.0},
    }
    assert (second.action, second.target_ref) == ("update", "acme")
    assert second.changes == {
        "enabled": {"old": True, "new": False},
        "read_timeout_s": {"old": 120.0, "new": 30.0},
    }


def test_turning_a_provider_on_by_hand_stops_it_following_its_key(staff: Client) -> None:
    Provider.objects.create(
        name="cloudy",
        kind="openai",
        base_url="https://api.test/v1",
        locality="cloud",
        enabled=False,
        follows_credential_env=True,
    )

    response = patch(staff, "/providers/cloudy", {"enabled": True})

    assert response.json()["follows_credential_env"] is False
    assert AuditEvent.objects.get().changes == {
        "enabled": {"old": False, "new": True},
        "follows_credential_env": {"old": True, "new": False},
    }


def test_a_staff_key_creates_lists_and_changes_a_model_each_write_audited(staff: Client) -> None:
    local_provider()

    created = post(
        staff,
        "/models",
        {
            "provider": "lab",
            "name": "qwen/qwen3:8b",
            "tier": "small_local",
            "context_window": 32768,
            "input_price_per_mtok_usd": "0.25",
            "output_price_per_mtok_usd": None,
            "task_strengths": ["code"],
            "accepts_images": True,
        },
    )
    changed = patch(
        staff,
        "/models/lab:qwen/qwen3:8b",
        {
            "input_price_per_mtok_usd": "0.3",
            "output_price_per_mtok_usd": "1.2",
            "enabled": False,
            "accepts_images": False,
        },
    )
    enabled = staff.get("/api/manage/models", {"provider": "lab", "enabled": "true"})
    disabled = staff.get("/api/manage/models", {"provider": "lab", "enabled": "false"})
    elsewhere = staff.get("/api/manage/models", {"provider": "nobody"})

    assert created.status_code == 201, created.content
    assert created.json()["ref"] == "lab:qwen/qwen3:8b"
    assert created.json()["input_price_per_mtok_usd"] == "0.250000"
    assert created.json()["output_price_per_mtok_usd"] is None
    assert created.json()["accepts_images"] is True
    assert changed.status_code == 200, changed.content
    assert changed.json()["output_price_per_mtok_usd"] == "1.200000"
    assert enabled.json() == {"models": []}
    assert [m["ref"] for m in disabled.json()["models"]] == ["lab:qwen/qwen3:8b"]
    assert elsewhere.json() == {"models": []}
    model = LLMModel.objects.get(name="qwen/qwen3:8b")
    assert (model.input_price_per_mtok_usd, model.enabled, model.accepts_images) == (
        Decimal("0.3"),
        False,
        False,
    )
    first, second = AuditEvent.objects.order_by("id")
    assert (first.action, first.target_kind, first.target_ref) == (
        "create",
        "model",
        "lab:qwen/qwen3:8b",
    )
    assert first.changes["input_price_per_mtok_usd"] == {"old": None, "new": "0.250000"}
    assert first.changes["output_price_per_mtok_usd"] == {"old": None, "new": None}
    assert first.changes["task_strengths"] == {"old": None, "new": ["code"]}
    assert first.changes["accepts_images"] == {"old": None, "new": True}
    assert first.changes["tier"] == {"old": None, "new": "small_local"}
    assert (second.action, second.target_ref) == ("update", "lab:qwen/qwen3:8b")
    assert second.changes == {
        "input_price_per_mtok_usd": {"old": "0.250000", "new": "0.300000"},
        "output_price_per_mtok_usd": {"old": None, "new": "1.200000"},
        "accepts_images": {"old": True, "new": False},
        "enabled": {"old": True, "new": False},
    }


def test_the_tool_and_json_flags_are_set_created_and_patched(staff: Client) -> None:
    local_provider()

    created = post(
        staff,
        "/models",
        {"provider": "lab", "name": "caller", "tier": "small_local", "accepts_tools": True},
    )
    changed = patch(staff, "/models/lab:caller", {"accepts_json_output": True})
    refused = patch(staff, "/models/lab:caller", {"accepts_tools": "yes"})

    assert created.status_code == 201, created.content
    assert (created.json()["accepts_tools"], created.json()["accepts_json_output"]) == (
        True,
        False,
    )
    assert changed.status_code == 200, changed.content
    assert refused.status_code == 400
    model = LLMModel.objects.get(name="caller")
    assert (model.accepts_tools, model.accepts_json_output) == (True, True)
    update = AuditEvent.objects.filter(action="update").get()
    assert update.changes == {"accepts_json_output": {"old": False, "new": True}}


def test_a_patch_that_changes_nothing_records_nothing(staff: Client) -> None:
    LLMModel.objects.create(provider=local_provider(), name="tiny", tier="small_local")

    response = patch(staff, "/models/lab:tiny", {"tier": "small_local", "enabled": True})

    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("owner_staff", [False, None], ids=["not staff", "no owner"])
def test_a_key_that_is_not_staffs_is_refused_and_nothing_changes(
    owner_staff: bool | None,
) -> None:
    client, _ = keyed(staff=owner_staff)
    LLMModel.objects.create(provider=local_provider(), name="tiny", tier="small_local")
    before = list(Provider.objects.values()), list(LLMModel.objects.values())

    answers = [
        client.get("/api/manage/providers"),
        post(client, "/providers", PROVIDER),
        patch(client, "/providers/lab", {"enabled": False}),
        post(client, "/models", {"provider": "lab", "name": "other"}),
        patch(client, "/models/lab:tiny", {"enabled": False}),
        # Refused before its body is read: a bad body is still a 403.
        patch(client, "/models/lab:tiny", {"tier": "giant"}),
        client.get("/api/manage/agents"),
        patch(client, "/agents/resources", {"enabled": False}),
        client.get("/api/manage/audit"),
    ]

    for answer in answers:
        assert refused(answer, 403) == {
            "code": "AUTHENTICATION_FAILED",
            "message": "Staff only: a staff user's session or API key.",
            "details": {},
        }
    assert (list(Provider.objects.values()), list(LLMModel.objects.values())) == before
    assert not AuditEvent.objects.exists()


def test_no_key_is_a_401_and_a_staff_session_is_accepted() -> None:
    anonymous = Client().get("/api/manage/providers")
    wrong = Client(headers={"Authorization": "Bearer orch-wrong"}).get("/api/manage/models")
    user = get_user_model().objects.create_user("ops", is_staff=True)
    session = Client()
    session.force_login(user)
    other = get_user_model().objects.create_user("dev", is_staff=False)
    non_staff_session = Client()
    non_staff_session.force_login(other)

    assert refused(anonymous, 401)["code"] == "AUTHENTICATION_FAILED"
    assert refused(wrong, 401)["code"] == "AUTHENTICATION_FAILED"
    assert session.get("/api/manage/providers").json() == {"providers": []}
    assert refused(non_staff_session.get("/api/manage/providers"), 403)["code"] == (
        "AUTHENTICATION_FAILED"
    )


def test_a_model_disabled_through_the_api_is_no_longer_routed_to(staff: Client) -> None:
    cloud = Provider.objects.create(
        name="openai", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    LLMModel.objects.create(
        provider=cloud,
        name="mini",
        tier="standard",
        input_price_per_mtok_usd=Decimal("0.15"),
        output_price_per_mtok_usd=Decimal("0.60"),
    )
    RoutingPolicy.objects.create(name="balanced", is_default=True)
    # The configuration is loaded and memoized: only a new version makes it reload.
    before = route_decide(prompt="hello", override="openai:mini")

    response = patch(staff, "/models/openai:mini", {"enabled": False})

    assert response.status_code == 200
    assert before.chain[0].ref == "openai:mini"
    with pytest.raises(ModelUnavailable, match="model disabled"):
        route_decide(prompt="hello", override="openai:mini")


def test_a_provider_disabled_through_the_api_takes_its_models_out_of_routing(
    staff: Client,
) -> None:
    cloud = Provider.objects.create(
        name="openai", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    LLMModel.objects.create(provider=cloud, name="mini", tier="standard")
    RoutingPolicy.objects.create(name="balanced", is_default=True)
    route_decide(prompt="hello", override="openai:mini")

    patch(staff, "/providers/openai", {"enabled": False})

    with pytest.raises(ModelUnavailable, match="provider openai disabled"):
        route_decide(prompt="hello", override="openai:mini")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/providers", {**PROVIDER, "kind": "bogus"}, "kind"),
        ("/providers", {**PROVIDER, "locality": "moon"}, "locality"),
        ("/providers", {**PROVIDER, "name": "not a slug"}, "name"),
        ("/providers", {**PROVIDER, "base_url": "llm.acme.test"}, "base_url"),
        ("/providers", {**PROVIDER, "connect_timeout_s": 0}, "connect_timeout_s"),
        ("/providers", {**PROVIDER, "credential_secret": SECRET}, "credential_secret"),
        ("/providers", {**PROVIDER, "enabled": "yes"}, "enabled"),
        ("/providers", {**PROVIDER, "name": "a\u0000b"}, "name"),
        ("/models", {"provider": "lab", "name": "m", "tier": "giant"}, "tier"),
        ("/models", {"provider": "lab", "name": "m", "context_window": 0}, "context_window"),
        (
            "/models",
            {"provider": "lab", "name": "m", "input_price_per_mtok_usd": "-1"},
            "input_price_per_mtok_usd",
        ),
        (
            "/models",
            {"provider": "lab", "name": "m", "output_price_per_mtok_usd": "cheap"},
            "output_price_per_mtok_usd",
        ),
        (
            "/models",
            {"provider": "lab", "name": "m", "input_price_per_mtok_usd": "NaN"},
            "input_price_per_mtok_usd",
        ),
        (
            "/models",
            {"provider": "lab", "name": "m", "input_price_per_mtok_usd": "0.0000001"},
            "input_price_per_mtok_usd",
        ),
        (
            "/models",
            {"provider": "lab", "name": "m", "task_strengths": ["code", "poetry"]},
            "task_strengths[1]",
        ),
        ("/models", {"provider": "lab", "name": ""}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    staff: Client, path: str, body: dict[str, Any], field: str
) -> None:
    local_provider()

    response = post(staff, path, body)

    assert fields(response) == [field]
    assert not AuditEvent.objects.exists()
    assert not LLMModel.objects.exists()
    assert list(Provider.objects.values_list("name", flat=True)) == ["lab"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/providers/lab", {"kind": "bogus"}, "kind"),
        ("/providers/lab", {"enabled": None}, "enabled"),
        ("/providers/lab", {"base_url": "ftp://x"}, "base_url"),
        ("/models/lab:tiny", {"tier": "giant"}, "tier"),
        ("/models/lab:tiny", {"input_price_per_mtok_usd": "-0.5"}, "input_price_per_mtok_usd"),
        ("/models/lab:tiny", {"max_output_tokens": 2**31}, "max_output_tokens"),
        ("/models/lab:tiny", {"context_window": None}, "context_window"),
        ("/models/lab:tiny", {"name": "renamed"}, "name"),
        ("/agents/resources", {"enabled": "off"}, "enabled"),
    ],
)
def test_a_bad_change_is_a_400_naming_the_field_and_changes_nothing(
    staff: Client, path: str, body: dict[str, Any], field: str
) -> None:
    LLMModel.objects.create(provider=local_provider(), name="tiny", tier="small_local")
    before = list(Provider.objects.values()), list(LLMModel.objects.values())

    response = patch(staff, path, body)

    assert fields(response) == [field]
    assert (list(Provider.objects.values()), list(LLMModel.objects.values())) == before
    assert not AuditEvent.objects.exists()


def test_a_credential_pasted_as_its_variable_name_is_refused_and_never_echoed(
    staff: Client,
) -> None:
    response = post(staff, "/providers", {**PROVIDER, "credential_env": SECRET})

    assert fields(response) == ["credential_env"]
    assert SECRET not in response.content.decode()


def test_duplicates_are_409_and_unknown_names_404(staff: Client) -> None:
    lab = local_provider()
    LLMModel.objects.create(provider=lab, name="tiny", tier="small_local", is_baseline=True)

    answers = {
        "provider": post(staff, "/providers", {**PROVIDER, "name": "lab"}),
        "model": post(staff, "/models", {"provider": "lab", "name": "tiny"}),
        "baseline": post(staff, "/models", {"provider": "lab", "name": "b", "is_baseline": True}),
    }
    missing = {
        "provider": patch(staff, "/providers/nowhere", {"enabled": False}),
        "model": patch(staff, "/models/lab:nothing", {"enabled": False}),
        "no colon": patch(staff, "/models/tiny", {"enabled": False}),
        "model's provider": post(staff, "/models", {"provider": "nowhere", "name": "x"}),
        "agent": patch(staff, "/agents/nobody", {"enabled": False}),
    }

    messages = {name: refused(answer, 409)["message"] for name, answer in answers.items()}
    assert messages == {
        "provider": "A provider named 'lab' already exists.",
        "model": "Provider 'lab' already has a model called 'tiny' (lab:tiny).",
        "baseline": "Only one model can be the baseline.",
    }
    for answer in missing.values():
        assert refused(answer, 404)["code"] == "INVALID_REQUEST"
    assert refused(missing["agent"], 404)["message"] == "No agent called 'nobody'."
    assert LLMModel.objects.count() == 1
    assert not AuditEvent.objects.exists()


@pytest.fixture
def quiet_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed readings at the probe boundary so the state does not depend on this machine."""
    monkeypatch.setattr(
        sampling._resource_monitor,
        "probe",
        lambda: ResourceReadings(cpu_pct=10.0, memory_pct=20.0, load_1m=0.1),
    )


def test_agents_are_listed_with_their_state_and_one_can_be_switched_off(
    staff: Client, quiet_resources: None, settings
) -> None:
    settings.ORCHESTRATOR_AGENTS = ["tests.routing.test_sampling.DiskAgent"]
    sampling.agents_sample()

    listed = staff.get("/api/manage/agents").json()["agents"]
    off = patch(staff, "/agents/resources", {"enabled": False})
    again = patch(staff, "/agents/resources", {"enabled": False})
    samples = AgentSample.objects.filter(agent="resources").count()
    sampling.agents_sample(every=True)
    after = {a["name"]: a for a in staff.get("/api/manage/agents").json()["agents"]}

    assert [(a["name"], a["source"], a["enabled"], a["state"]) for a in listed] == [
        ("resources", "builtin", True, "AVAILABLE"),
        ("connectivity", "builtin", True, "no_targets"),
        ("budget", "builtin", True, "no_budget"),
        ("disk", "settings", True, "ok"),
    ]
    assert all(a["last_sampled_at"] for a in listed)
    assert listed[3]["path"] == "tests.routing.test_sampling.DiskAgent"
    assert off.status_code == 200, off.content
    assert (off.json()["enabled"], off.json()["state"], off.json()["reason"]) == (
        False,
        "unknown",
        "disabled",
    )
    assert again.status_code == 200
    # Not sampled any more; the others are.
    assert AgentSample.objects.filter(agent="resources").count() == samples
    assert AgentSample.objects.filter(agent="disk").count() == 2
    snapshot = sampling.agents_snapshot_current(now=sampling.timezone.now())
    assert next(s for s in snapshot.states if s.agent == "resources").reason == "disabled"
    assert snapshot.overall("resources") == "unknown"
    assert (after["resources"]["enabled"], after["resources"]["state"]) == (False, "unknown")
    assert after["disk"]["state"] == "ok"
    event = AuditEvent.objects.get()
    assert (event.action, event.target_kind, event.target_ref) == ("update", "agent", "resources")
    assert event.changes == {"enabled": {"old": True, "new": False}}


def test_an_agent_switched_back_on_is_sampled_again(staff: Client, quiet_resources: None) -> None:
    patch(staff, "/agents/budget", {"enabled": False})
    sampling.agents_sample()
    patch(staff, "/agents/budget", {"enabled": True})
    sampling.agents_sample()

    assert AgentSample.objects.filter(agent="budget").count() == 1
    assert [e.changes["enabled"]["new"] for e in AuditEvent.objects.order_by("id")] == [
        False,
        True,
    ]


def test_the_audit_trail_is_newest_first_and_paged(staff: Client) -> None:
    for name in ("one", "two", "three"):
        post(staff, "/providers", {**PROVIDER, "name": name})

    first = staff.get("/api/manage/audit", {"limit": 2}).json()
    rest = staff.get("/api/manage/audit", {"limit": 2, "before": first["next_before"]}).json()
    agents = staff.get("/api/manage/audit", {"target_kind": "agent"}).json()
    too_many = staff.get("/api/manage/audit", {"limit": 10_000})

    assert [e["target_ref"] for e in first["events"]] == ["three", "two"]
    assert [e["target_ref"] for e in rest["events"]] == ["one"]
    assert rest["next_before"] is None
    assert agents == {"events": [], "next_before": None}
    assert fields(too_many) == ["query.limit"]


def test_no_credential_reaches_a_response_or_the_audit_trail(
    staff: Client, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    settings.CREDENTIALS_KEY = Fernet.generate_key().decode()
    stored = local_provider()
    provider_credential_set(provider=stored, secret=SECRET)
    ciphertext = Provider.objects.get(name="lab").credential_encrypted

    answers = [
        post(staff, "/providers", PROVIDER),
        staff.get("/api/manage/providers"),
        patch(staff, "/providers/acme", {"enabled": False}),
        # Naming a variable drops the stored key, as in the admin; the record says so only.
        patch(staff, "/providers/lab", {"credential_env": "LAB_API_KEY"}),
        staff.get("/api/manage/audit"),
    ]

    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200]
    assert answers[0].json()["credential_state"] == "set (environment variable ACME_API_KEY)"
    trail = json.dumps(list(AuditEvent.objects.values("changes", "target_ref")))
    for text in [*(a.content.decode() for a in answers), trail]:
        assert SECRET not in text
        assert ciphertext not in text
        assert "credential_encrypted" not in text
    assert Provider.objects.get(name="lab").credential_encrypted == ""
    assert AuditEvent.objects.get(target_ref="lab").changes == {
        "credential_env": {"old": "", "new": "LAB_API_KEY"},
        "credential_stored": {"old": True, "new": False},
    }


def test_the_openapi_document_lists_the_management_api() -> None:
    document = Client().get("/api/openapi.json").json()

    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith("/api/manage/")
        for method in item
    }
    assert operations == {
        ("GET", "/api/manage/providers"),
        ("POST", "/api/manage/providers"),
        ("PATCH", "/api/manage/providers/{name}"),
        ("GET", "/api/manage/models"),
        ("POST", "/api/manage/models"),
        ("PATCH", "/api/manage/models/{ref}"),
        ("GET", "/api/manage/agents"),
        ("PATCH", "/api/manage/agents/{name}"),
        ("GET", "/api/manage/audit"),
    }
    post_model = document["paths"]["/api/manage/models"]["post"]
    assert {"201", "400", "401", "403", "404", "409"} <= set(post_model["responses"])
    assert "credential_secret" not in json.dumps(document["components"]["schemas"]["ProviderIn"])


@pytest.mark.parametrize("odd", ["a%00b", "%ff%fe", "a" * 5000, "..%2f..%2fetc"])
def test_an_odd_name_in_the_path_is_a_404(staff: Client, odd: str) -> None:
    answers = [
        patch(staff, f"/providers/{odd}", {"enabled": False}),
        patch(staff, f"/models/{odd}", {"enabled": False}),
        patch(staff, f"/models/lab:{odd}", {"enabled": False}),
        patch(staff, f"/agents/{odd}", {"enabled": False}),
    ]

    assert [a.status_code for a in answers] == [404] * 4
    # A name that decodes to a slash matches no route of the API: the site's own 404.
    enveloped = [a for a in answers if a["Content-Type"] == "application/json"]
    assert {refused(a, 404)["code"] for a in enveloped} <= {"INVALID_REQUEST"}
    assert len(enveloped) >= (1 if "%2f" in odd else 4)


def test_a_nul_in_a_filter_is_a_400(staff: Client) -> None:
    assert fields(staff.get("/api/manage/models", {"provider": "a\x00b"})) == ["provider"]
