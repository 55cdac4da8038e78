"""Provider API keys at rest: Fernet encryption with `settings.CREDENTIALS_KEY`.

No function here puts a secret, or a ciphertext, into an exception message or a log line.
"""

from __future__ import annotations

import os
import re

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.adapters.types import ProviderAuthFailed

ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CredentialUnavailable(ProviderAuthFailed):
    """The provider's key cannot be resolved here (variable unset, key unreadable). Typed as an
    authentication failure so callers treat it like the upstream refusing the request."""


def credentials_key_missing_message() -> str:
    return (
        "CREDENTIALS_KEY is not set, so API keys cannot be stored encrypted. Generate one with "
        '`python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())"` and set it in the environment, or give the '
        "name of an environment variable that holds the key instead."
    )


def _fernet() -> Fernet:
    key = settings.CREDENTIALS_KEY
    if not key:
        raise ImproperlyConfigured(credentials_key_missing_message())
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        # The cryptography message is generic; say which setting is wrong, not its value.
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes)."
        ) from None


def credential_encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def credential_decrypt(token: str, *, provider_name: str) -> str:
    try:
        fernet = _fernet()
    except ImproperlyConfigured as error:
        raise CredentialUnavailable(
            f"provider {provider_name}: its API key is stored encrypted but {error}"
        ) from None
    try:
        return fernet.decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise CredentialUnavailable(
            f"provider {provider_name}: the stored API key cannot be decrypted with the "
            "current CREDENTIALS_KEY (was the key changed?); store the key again"
        ) from None


def credential_from_env(variable: str, *, provider_name: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise CredentialUnavailable(
            f"provider {provider_name}: environment variable {variable} is not set"
        )
    return value


def secret_redact(text: str, secret: str | None) -> str:
    """Upstream error bodies sometimes echo the key they were sent; never pass it on."""
    if not secret:
        return text
    return text.replace(secret, "[redacted]")
