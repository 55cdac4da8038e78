"""Non-staff users see their usage through their own API keys too (routing registers the key
owner resolver that analytics reads)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from analytics.outcome import RequestOutcome
from analytics.scoping import scope_for
from analytics.services import request_record
from gateway.apikeys import apikey_create, apikey_find, apikey_revoke

pytestmark = pytest.mark.django_db


def test_a_users_scope_covers_the_keys_they_own_revoked_ones_included() -> None:
    users = get_user_model().objects
    ana, bo = users.create_user("ana"), users.create_user("bo")
    first = apikey_create(name="ana-ci", owner_username="ana")
    second = apikey_create(name="ana-old", owner_username="ana")
    apikey_create(name="bo-key", owner_username="bo")
    apikey_create(name="nobody")
    apikey_revoke(api_key=apikey_find(ref=str(second.api_key.id)))

    scope = scope_for(user_id=ana.id, is_staff=False)

    assert scope.api_key_ids == tuple(sorted([first.api_key.id, second.api_key.id]))
    assert scope_for(user_id=bo.id, is_staff=False).api_key_ids != scope.api_key_ids


def test_rows_made_with_a_users_key_are_in_their_scope_and_no_one_elses() -> None:
    from analytics.models import RequestLog

    users = get_user_model().objects
    ana, bo = users.create_user("ana"), users.create_user("bo")
    key = apikey_create(name="ana-ci", owner_username="ana")
    at = datetime(2026, 11, 1, tzinfo=UTC)
    for api_key_id in (key.api_key.id, None):
        request_record(
            outcome=RequestOutcome(
                created_at=at,
                entry_point="openai",
                status="success",
                cost_state="none",
                api_key_id=api_key_id,
            )
        )

    ana_rows = RequestLog.objects.filter(scope_for(user_id=ana.id, is_staff=False).q())
    bo_rows = RequestLog.objects.filter(scope_for(user_id=bo.id, is_staff=False).q())

    assert list(ana_rows.values_list("api_key_id", flat=True)) == [key.api_key.id]
    assert bo_rows.count() == 0
