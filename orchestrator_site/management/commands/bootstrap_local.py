"""Prepare a local install: an admin account and the demo configuration. Idempotent."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from providers.demo import demo_registry_load
from routing.config.presets import default_policy_ensure


class Command(BaseCommand):
    help = "Create the local admin account (if missing) and load the demo configuration."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--local-model-url", default="", help="Base URL of the local model")

    def handle(self, *args: Any, **options: Any) -> None:
        self._ensure_admin()
        providers = demo_registry_load(local_model_url=options["local_model_url"] or None)
        enabled = [p.name for p in providers if p.enabled]
        self.stdout.write(f"==> demo configuration loaded; enabled providers: {', '.join(enabled)}")
        waiting = [
            f"{p.name} ({p.credential_env})"
            for p in providers
            if p.follows_credential_env and not p.enabled
        ]
        if waiting:
            self.stdout.write(f"    off until their key is set: {', '.join(waiting)}")
        if default_policy_ensure():
            self.stdout.write("==> routing policy 'balanced' loaded as the default")

    def _ensure_admin(self) -> None:
        user_model = get_user_model()
        username = os.environ.get("ORCHESTRATOR_ADMIN_USER", "admin")
        password_file = settings.VAR_DIR / "admin_password"
        if user_model.objects.filter(username=username).exists():
            hint = f" (password in {password_file})" if password_file.exists() else ""
            self.stdout.write(f"==> admin account: {username}{hint}")
            return
        # An empty value (a copied .env.example) counts as unset: a password is generated, kept.
        chosen = os.environ.get("ORCHESTRATOR_ADMIN_PASSWORD", "")
        password = chosen or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        if not chosen:
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"==> admin account created: {username} / {password}"))
