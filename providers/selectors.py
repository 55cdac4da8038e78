"""Reads of the registry that other rooms use."""

from __future__ import annotations

from providers.adapters.types import Endpoint
from providers.credentials import credential_decrypt, credential_from_env
from providers.models import Provider


def provider_api_key(provider: Provider) -> str | None:
    """The provider's API key in clear, or None when it needs none. Raises
    `CredentialUnavailable` (an authentication failure) when it is configured but missing."""
    if provider.credential_encrypted:
        return credential_decrypt(provider.credential_encrypted, provider_name=provider.name)
    if provider.credential_env:
        return credential_from_env(provider.credential_env, provider_name=provider.name)
    return None


def provider_endpoint(provider: Provider, *, read_timeout_s: float | None = None) -> Endpoint:
    """Where and how to reach `provider`, key resolved. `read_timeout_s` caps the provider's
    own read timeout (a health probe must not wait as long as a generation may)."""
    read_timeout = provider.read_timeout_s
    if read_timeout_s is not None:
        read_timeout = min(read_timeout, read_timeout_s)
    return Endpoint(
        base_url=provider.base_url,
        api_key=provider_api_key(provider),
        connect_timeout_s=provider.connect_timeout_s,
        read_timeout_s=read_timeout,
    )
