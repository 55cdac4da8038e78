"""Images in a door's messages, checked the same way at every door: inline only (base64, or a
`data:` URL holding base64), one of the media types every vision provider reads, and valid
base64. The gateway never fetches an image from a URL: that would make it fetch addresses its
callers choose (its own network included) and hide the cost of a slow download in a request's
latency. A request with an image is then routed only to models marked as accepting images.
"""

from __future__ import annotations

import base64
import binascii
import re

from providers.adapters.types import IMAGE_MEDIA_TYPES, Image
from routing.validation import FieldInvalid

_DATA_URL = re.compile(r"data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.S)
URL_REFUSAL = (
    "image URLs are not fetched by this gateway; send the image inline "
    "(a data:image/...;base64,... URL or base64 data)"
)


def image_of_base64(media_type: object, data: object, field: str) -> Image:
    """An `Image` from a media type and base64 data, or FieldInvalid naming `field`."""
    if not isinstance(media_type, str) or media_type.lower() not in IMAGE_MEDIA_TYPES:
        raise FieldInvalid(
            field, f"media type must be one of {', '.join(IMAGE_MEDIA_TYPES)}, not {media_type!r}"
        )
    if not isinstance(data, str) or not data:
        raise FieldInvalid(field, "image data must be a non-empty base64 string")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FieldInvalid(field, "image data is not valid base64") from exc
    return Image(media_type=media_type.lower(), data=data)


def image_of_url(url: object, field: str) -> Image:
    """An `Image` from a `data:` URL; any other URL is refused (never fetched)."""
    if not isinstance(url, str) or not url:
        raise FieldInvalid(field, "must be a data: URL holding the image")
    found = _DATA_URL.fullmatch(url)
    if found is None:
        raise FieldInvalid(field, URL_REFUSAL)
    return image_of_base64(found["media_type"], found["data"], field)


# The first bytes of each media type in IMAGE_MEDIA_TYPES (WEBP: `RIFF`, four bytes of length,
# then `WEBP`).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def media_type_sniff(raw: bytes) -> str | None:
    """The media type an image's bytes begin with, or None for none of IMAGE_MEDIA_TYPES."""
    for signature, media_type in _SIGNATURES:
        if raw.startswith(signature):
            return media_type
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_of_bare_base64(data: object, field: str) -> Image:
    """An `Image` from base64 data without a media type (Ollama's `images`): the type is read
    from the image's first bytes. Anything but a PNG, JPEG, GIF or WEBP is FieldInvalid."""
    if not isinstance(data, str) or not data:
        raise FieldInvalid(field, "image data must be a non-empty base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FieldInvalid(field, "image data is not valid base64") from exc
    media_type = media_type_sniff(raw)
    if media_type is None:
        raise FieldInvalid(field, "is not a PNG, JPEG, GIF or WEBP image (read from its bytes)")
    return Image(media_type=media_type, data=data)
