"""Images for the doors' tests: two small real images, and the gateway's registry with or
without a model that reads them."""

from __future__ import annotations

import base64

from django.core.cache import cache

from providers.models import LLMModel
from tests.providers.upstream_server import UpstreamServer
from tests.routing.gateway_support import (
    baseline_model,
    every_task_to,
    settle_config,
    upstream_models,
)

# A 1x1 PNG and a 1x1 GIF, whole.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAcCBlCwAAAABJRU5ErkJggg=="
)
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def data_url(media_type: str, raw: bytes) -> str:
    return f"data:{media_type};base64,{b64(raw)}"


def image_part(media_type: str, raw: bytes) -> dict[str, object]:
    """An image as the OpenAI-compatible upstream receives it."""
    return {"type": "image_url", "image_url": {"url": data_url(media_type, raw)}}


def images_registry(upstream: UpstreamServer, *, alpha_reads_images: bool) -> dict[str, LLMModel]:
    """`gateway_registry`'s models (alpha first, then beta, for every task), with alpha marked
    as accepting images or not; beta never is."""
    cache.clear()
    models = upstream_models(upstream)
    models["alpha"].accepts_images = alpha_reads_images
    models["alpha"].save(update_fields=["accepts_images"])
    models["premium"] = baseline_model(upstream, enabled=False)
    every_task_to("gateway-policy", models["alpha"], models["beta"])
    settle_config()
    return models
