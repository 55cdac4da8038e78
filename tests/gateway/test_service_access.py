"""Who may read `/metrics`, `/metrics/prometheus`, `/models` and `/models/{name}/status`
(gateway/service_access.py)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from providers.models import LLMModel, Provider

pytestmark = pytest.mark.django_db
PATHS = ["/metrics", "/metrics/prometheus", "/models", "/models/cloud:fast/status"]


@pytest.fixture(autouse=True)
def _model() -> None:
    cloud = Provider.objects.create(
        name="cloud", kind="openai", base_url="http://127.0.0.1:9/v1", locality="cloud"
    )
    LLMModel.objects.create(provider=cloud, name="fast", tier="standard")


def bearer(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


def signed_in(*, staff: bool) -> Client:
    user = get_user_model().objects.create_user("reader", password="pw-reader-1", is_staff=staff)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", PATHS)
def test_an_anonymous_caller_is_refused_with_a_401_envelope(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.json() == {
        "error": {
            "code": "AUTHENTICATION_FAILED",
            "message": (
                "Present Authorization: Bearer <metrics token>, or sign in as a staff user."
            ),
            "details": {},
        }
    }


@pytest.mark.parametrize("path", PATHS)
def test_the_metrics_token_is_accepted_and_a_wrong_one_refused(path: str) -> None:
    right = bearer(settings.ORCHESTRATOR_METRICS_TOKEN).get(path)
    wrong = bearer(settings.ORCHESTRATOR_METRICS_TOKEN + "x").get(path)

    assert right.status_code == 200
    assert wrong.status_code == 401


def test_no_token_is_accepted_when_none_is_set(settings) -> None:
    presented = settings.ORCHESTRATOR_METRICS_TOKEN
    settings.ORCHESTRATOR_METRICS_TOKEN = ""

    assert bearer(presented).get("/metrics").status_code == 401


@pytest.mark.parametrize("path", PATHS)
def test_a_staff_session_is_accepted(path: str) -> None:
    assert signed_in(staff=True).get(path).status_code == 200


def test_a_signed_in_user_who_is_not_staff_gets_a_403_envelope() -> None:
    response = signed_in(staff=False).get("/models")

    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "AUTHENTICATION_FAILED",
        "message": "Staff only: sign in as a staff user.",
        "details": {},
    }


def test_anyone_may_read_them_when_they_are_public(settings) -> None:
    settings.ORCHESTRATOR_METRICS_PUBLIC = True

    assert [Client().get(path).status_code for path in PATHS] == [200, 200, 200, 200]
