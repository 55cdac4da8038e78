"""The security headers every page carries (orchestrator_site/security.py); the browser check
of the policy is tests/e2e/test_content_security_policy.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_page_carries_the_policy_with_its_own_websocket_host() -> None:
    response = Client().get("/accounts/login/", HTTP_HOST="localhost:8000")

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'; "
        "connect-src 'self' ws://localhost:8000 wss://localhost:8000"
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_a_refused_host_gets_the_policy_without_a_websocket_host() -> None:
    response = Client().get("/accounts/login/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Security-Policy"].endswith("; connect-src 'self'")


def test_no_template_keeps_an_inline_script_or_event_handler() -> None:
    templates = Path(__file__).resolve().parents[2] / "templates"
    inline = re.compile(r"<script(?![^>]*\bsrc=)|\son[a-z]+\s*=", re.IGNORECASE)
    found = {
        str(path.relative_to(templates)): match.group(0)
        for path in templates.rglob("*.html")
        for match in [inline.search(path.read_text())]
        if match
    }
    assert found == {}
