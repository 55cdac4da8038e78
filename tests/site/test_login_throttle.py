"""Login throttling on the site's and the admin's login pages
(orchestrator_site/login_throttle.py)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"
LOCKED_1S = "Too many failed logins. Try again in 1 second."


@pytest.fixture(autouse=True)
def _short_lockout(settings) -> None:
    settings.ORCHESTRATOR_LOGIN_MAX_FAILURES = 3
    settings.ORCHESTRATOR_LOGIN_LOCKOUT_S = 1


@pytest.fixture
def users() -> None:
    get_user_model().objects.create_user("maria", password=PASSWORD, is_staff=True)
    get_user_model().objects.create_user("ana", password=PASSWORD)


def login(client: Client, username: str, password: str, address: str = "10.0.0.1") -> str:
    """Posts the login form; "in" when it logged in, else the page's error text."""
    response = client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )
    if response.status_code == 302:
        return "in"
    assert response.status_code == 200
    page = response.content.decode()
    if LOCKED_1S in page:
        return LOCKED_1S
    assert "didn't match" in page
    return "wrong"


def test_after_n_wrong_passwords_the_right_one_is_refused_until_the_lockout_passes(
    users: None,
) -> None:
    client = Client()

    wrong = [login(client, "maria", "guess") for _ in range(3)]
    locked = login(client, "maria", PASSWORD)
    assert "_auth_user_id" not in client.session
    time.sleep(1.1)
    after = login(client, "maria", PASSWORD)

    assert wrong == ["wrong", "wrong", LOCKED_1S]
    assert locked == LOCKED_1S
    assert after == "in"


def test_another_user_or_address_is_not_locked_out(users: None) -> None:
    for _ in range(3):
        login(Client(), "maria", "guess", address="10.0.0.1")

    assert login(Client(), "maria", PASSWORD, address="10.0.0.1") == LOCKED_1S
    assert login(Client(), "maria", PASSWORD, address="10.0.0.2") == "in"
    assert login(Client(), "ana", PASSWORD, address="10.0.0.1") == "in"


def test_a_successful_login_clears_the_count(users: None) -> None:
    attempts = [login(Client(), "maria", "guess") for _ in range(2)]
    attempts.append(login(Client(), "maria", PASSWORD))
    attempts += [login(Client(), "maria", "guess") for _ in range(2)]
    attempts.append(login(Client(), "maria", PASSWORD))

    assert attempts == ["wrong", "wrong", "in", "wrong", "wrong", "in"]


def test_the_admin_login_is_throttled_too(users: None, settings) -> None:
    settings.ORCHESTRATOR_LOGIN_LOCKOUT_S = 900
    client = Client(REMOTE_ADDR="10.0.0.9")

    pages = [
        client.post("/admin/login/", {"username": "maria", "password": "guess"}) for _ in range(3)
    ]
    right = client.post("/admin/login/", {"username": "maria", "password": PASSWORD})

    assert [p.status_code for p in pages] == [200, 200, 200]
    assert "Please enter the correct username and password" in pages[0].content.decode()
    assert "Too many failed logins. Try again in 15 minutes." in pages[2].content.decode()
    assert right.status_code == 200
    assert "Too many failed logins. Try again in 15 minutes." in right.content.decode()
    assert "_auth_user_id" not in client.session


def test_with_redis_unreachable_logins_still_need_the_right_password(users: None, settings) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }

    attempts = [login(Client(), "maria", "guess") for _ in range(4)]
    attempts.append(login(Client(), "maria", PASSWORD))

    assert attempts == ["wrong", "wrong", "wrong", "wrong", "in"]
