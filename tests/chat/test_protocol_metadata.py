"""The chat frame's optional project and tags (the signed-in user is the end user)."""

from __future__ import annotations

import pytest

from chat.protocol import ChatRequestFrame, FrameError
from routing.request_metadata import RequestMetadata


def test_a_frame_carries_project_and_tags() -> None:
    frame = ChatRequestFrame.parse({"content": "hi", "project_id": "p", "tags": "a,b"})
    assert frame.metadata == RequestMetadata(project="p", tags=("a", "b"))


def test_a_bad_tag_is_a_frame_error_naming_the_field() -> None:
    with pytest.raises(FrameError, match=r"^tags\[0\]: must not contain control characters"):
        ChatRequestFrame.parse({"content": "hi", "tags": ["a\nb"]})


def test_a_frame_may_ask_for_local_models_only() -> None:
    frame = ChatRequestFrame.parse({"content": "hi", "local_only": True})
    assert frame.metadata == RequestMetadata(local_only=True)
    with pytest.raises(FrameError, match=r"^local_only: must be true or false"):
        ChatRequestFrame.parse({"content": "hi", "local_only": "maybe"})
