"""`manage.py apikey create|list|revoke`: the command-line side of API key administration."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.apikeys import ApiKeyNotFound, apikey_create, apikey_find, apikey_revoke
from routing.models import ApiKey


class Command(BaseCommand):
    help = "Create, list and revoke gateway API keys. A new key is printed once, never again."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a key and print it once.")
        create.add_argument("--name", required=True)
        create.add_argument("--user", help="Username of the key's owner.")
        create.add_argument("--rpm", type=int, help="Requests per minute.")
        create.add_argument("--tpm", type=int, help="Tokens per minute.")
        create.add_argument(
            "--local-only",
            action="store_true",
            help="Keep every request of the key on local models (docs/routing.md, Privacy).",
        )
        actions.add_parser("list", help="List keys (prefix only; the key itself is not stored).")
        revoke = actions.add_parser("revoke", help="Revoke a key by id or prefix.")
        revoke.add_argument("ref", help="The key's id or the start of its prefix.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            self._create(options)
        elif action == "list":
            self._list()
        else:
            self._revoke(options["ref"])

    def _create(self, options: dict[str, Any]) -> None:
        for limit in ("rpm", "tpm"):
            if options[limit] is not None and options[limit] < 1:
                raise CommandError(f"--{limit} must be a positive integer")
        try:
            created = apikey_create(
                name=options["name"],
                owner_username=options["user"],
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
                local_only=options["local_only"],
            )
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"no user called {options['user']!r}") from exc
        self.stdout.write(f"Created API key {created.api_key.pk} ({created.api_key.name}).")
        self.stdout.write("Store it now; it is not shown again:")
        self.stdout.write(created.plaintext)

    def _list(self) -> None:
        self.stdout.write(f"{'id':>5}  {'prefix':<14} {'state':<8} {'rpm':>6} {'tpm':>8}  name")
        for key in ApiKey.objects.select_related("owner").order_by("pk"):
            state = "active" if key.is_active else ("revoked" if key.revoked_at else "disabled")
            self.stdout.write(
                f"{key.pk:>5}  {key.prefix:<14} {state:<8} {key.rpm_limit or '-':>6} "
                f"{key.tpm_limit or '-':>8}  {key.name}"
                + (f" (owner {key.owner.username})" if key.owner else "")
            )

    def _revoke(self, ref: str) -> None:
        try:
            key = apikey_find(ref=ref)
        except ApiKeyNotFound as exc:
            raise CommandError(str(exc)) from exc
        apikey_revoke(api_key=key)
        self.stdout.write(f"Revoked API key {key.pk} ({key.prefix}…).")
