"""The native API accepts a signed-in session, with Django's CSRF protection."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, wait_rows
from tests.routing.streams import openai_sse

pytestmark = pytest.mark.django_db(transaction=True)


async def test_session_needs_the_csrf_token(upstream: UpstreamServer) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["ok"], usage=(3, 1))))
    user = await get_user_model().objects.acreate(username="sam")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)

    refused = await client.post(
        "/api/execute", {"prompt": "hello there"}, content_type="application/json"
    )
    token = "k" * 32  # a CSRF secret, as Django's cookie carries it
    client.cookies["csrftoken"] = token
    accepted = await client.post(
        "/api/execute",
        {"prompt": "hello there"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert accepted.status_code == 200
    body = accepted.json()
    assert body["response"] == "ok"
    assert body["model_id"] == "alpha:alpha-model"
    assert body["metrics"]["input_tokens"] == 3
    rows = await sync_to_async(wait_rows)(1, entry_point="native")
    assert rows[0].user_id == user.pk
    assert rows[0].api_key_id is None
