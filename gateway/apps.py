from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The doors. No models of their own: API keys and batches are routing's tables."""

    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # Non-staff users see usage through their own API keys too (analytics.scoping).
        from analytics.scoping import key_owner_resolver_register
        from gateway.apikeys import apikey_ids_of_user

        key_owner_resolver_register(apikey_ids_of_user)
