"""gateway/images.py: an image is read the same way at every door. Ollama's images come without
a media type, so theirs is read from the image's first bytes."""

from __future__ import annotations

import pytest

from gateway.images import image_of_bare_base64, image_of_url, media_type_sniff
from providers.adapters.types import Image
from routing.validation import FieldInvalid
from tests.gateway.images_support import GIF, PNG, b64

# A JPEG's and a WEBP's first bytes (all the sniffing reads).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00"


@pytest.mark.parametrize(
    ("raw", "media_type"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (WEBP, "image/webp"),
    ],
)
def test_bare_base64_takes_its_media_type_from_its_first_bytes(raw: bytes, media_type: str) -> None:
    assert image_of_bare_base64(b64(raw), "images[0]") == Image(media_type, b64(raw))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b64(b"hello, not an image"),
            "is not a PNG, JPEG, GIF or WEBP image (read from its bytes)",
        ),
        # RIFF, but a WAVE file.
        (b64(b"RIFF\x24\x00\x00\x00WAVEfmt "), "is not a PNG, JPEG, GIF or WEBP image"),
        (b64(b"\x89PN"), "is not a PNG, JPEG, GIF or WEBP image"),
        ("", "image data must be a non-empty base64 string"),
        (7, "image data must be a non-empty base64 string"),
        ("not base64!", "image data is not valid base64"),
        (b64(PNG)[:-1], "image data is not valid base64"),
        (f"data:image/png;base64,{b64(PNG)}", "image data is not valid base64"),
    ],
)
def test_bare_base64_that_is_no_image_is_refused_naming_the_field(
    data: object, message: str
) -> None:
    with pytest.raises(FieldInvalid) as refused:
        image_of_bare_base64(data, "messages[0].images[1]")

    assert refused.value.field == "messages[0].images[1]"
    assert refused.value.message.startswith(message)


def test_sniffing_knows_exactly_the_media_types_every_provider_reads() -> None:
    assert media_type_sniff(b"") is None
    assert media_type_sniff(b"BM\x00\x00") is None  # a BMP
    assert media_type_sniff(b"RIFF\x00\x00\x00\x00WEB") is None


def test_a_data_url_is_read_and_any_other_url_is_refused() -> None:
    assert image_of_url(f"data:image/gif;base64,{b64(GIF)}", "url") == Image("image/gif", b64(GIF))
    with pytest.raises(FieldInvalid) as refused:
        image_of_url("https://example.com/cat.png", "messages[0].content[1].image_url.url")

    assert refused.value.field == "messages[0].content[1].image_url.url"
    assert "not fetched by this gateway" in refused.value.message
