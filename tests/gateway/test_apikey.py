"""API keys: hashed storage, the command, the admin, and authentication from the cache."""

from __future__ import annotations

import asyncio
import hashlib
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import CommandError, call_command

from gateway import apikeys
from gateway.apikeys import apikey_authenticate, apikey_create, apikey_find, apikey_revoke
from routing.models import ApiKey
from routing.pipeline.events import Caller


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


@pytest.mark.django_db
def test_only_the_hash_is_stored_and_the_plaintext_returned_once() -> None:
    created = apikey_create(name="ci", rpm_limit=60, tpm_limit=10000)

    row = ApiKey.objects.get(pk=created.api_key.pk)
    assert created.plaintext.startswith("orch-")
    assert len(created.plaintext) == 5 + 43
    assert row.key_hash == hashlib.sha256(created.plaintext.encode()).hexdigest()
    assert row.prefix == created.plaintext[:12]
    assert created.plaintext not in str(row.__dict__)


@pytest.mark.django_db(transaction=True)
async def test_authentication_is_served_from_the_cache_when_warm() -> None:
    from asgiref.sync import sync_to_async

    user = await get_user_model().objects.acreate(username="owner", is_staff=True)
    created = await sync_to_async(apikey_create)(
        name="warm", owner_username="owner", rpm_limit=5, tpm_limit=50
    )

    first = await apikey_authenticate(created.plaintext)
    # With the row gone, only the cache can still answer: a warm check reads no table.
    await ApiKey.objects.filter(pk=created.api_key.pk).adelete()
    second = await apikey_authenticate(created.plaintext)

    expected = Caller(
        user_id=user.pk, api_key_id=created.api_key.pk, rpm_limit=5, tpm_limit=50, is_staff=True
    )
    assert first == second == expected


@pytest.mark.django_db(transaction=True)
async def test_revocation_drops_the_cached_key() -> None:
    from asgiref.sync import sync_to_async

    created = await sync_to_async(apikey_create)(name="gone")
    assert await apikey_authenticate(created.plaintext) is not None

    await sync_to_async(apikey_revoke)(api_key=created.api_key)

    assert await apikey_authenticate(created.plaintext) is None
    assert await apikey_authenticate("orch-" + "x" * 43) is None
    assert await apikey_authenticate("not-a-key") is None


@pytest.mark.django_db(transaction=True)
async def test_another_process_revoking_reaches_this_one_within_the_local_window(
    monkeypatch,
) -> None:
    from asgiref.sync import sync_to_async

    monkeypatch.setattr(apikeys, "LOCAL_TTL_S", 0.2)
    created = await sync_to_async(apikey_create)(name="elsewhere")
    assert await apikey_authenticate(created.plaintext) is not None

    # Another process revokes: the row and the shared cache change, this process's memory
    # does not (that process's apikey_forget ran there).
    await ApiKey.objects.filter(pk=created.api_key.pk).aupdate(enabled=False)
    await cache.adelete(f"apikey:{created.api_key.key_hash}")

    assert await apikey_authenticate(created.plaintext) is not None  # within the window
    await asyncio.sleep(0.25)
    assert await apikey_authenticate(created.plaintext) is None


@pytest.mark.django_db
def test_command_creates_lists_and_revokes() -> None:
    get_user_model().objects.create(username="ana")
    out = StringIO()

    call_command("apikey", "create", "--name", "ci", "--user", "ana", "--rpm", "30", stdout=out)
    plaintext = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get()
    listed = StringIO()
    call_command("apikey", "list", stdout=listed)
    call_command("apikey", "revoke", key.prefix, stdout=StringIO())

    assert plaintext.startswith("orch-")
    assert key.owner is not None and key.owner.username == "ana"
    assert key.rpm_limit == 30
    assert key.prefix in listed.getvalue()
    assert plaintext not in listed.getvalue()
    assert "active" in listed.getvalue()
    key.refresh_from_db()
    assert key.revoked_at is not None and not key.is_active
    with pytest.raises(CommandError, match="no user"):
        call_command("apikey", "create", "--name", "x", "--user", "nobody", stdout=StringIO())
    with pytest.raises(CommandError, match="no API key"):
        call_command("apikey", "revoke", "orch-nothing", stdout=StringIO())


@pytest.mark.django_db
def test_find_refuses_an_ambiguous_prefix() -> None:
    apikey_create(name="a")
    apikey_create(name="b")

    with pytest.raises(LookupError, match="several"):
        apikey_find(ref="orch-")


@pytest.mark.django_db
def test_admin_shows_a_new_key_once_and_never_the_hash(admin_client) -> None:
    response = admin_client.post(
        "/admin/routing/apikey/add/",
        {"name": "from-admin", "rpm_limit": "10", "tpm_limit": "", "enabled": "on"},
        follow=True,
    )

    key = ApiKey.objects.get(name="from-admin")
    page = response.content.decode()
    assert response.status_code == 200
    assert "copy it now" in page
    shown = page.split("The new API key is ")[1].split(" ")[0]
    assert hashlib.sha256(shown.encode()).hexdigest() == key.key_hash
    change = admin_client.get(f"/admin/routing/apikey/{key.pk}/change/").content.decode()
    assert key.key_hash not in change
    assert shown not in change

    admin_client.post(
        "/admin/routing/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
