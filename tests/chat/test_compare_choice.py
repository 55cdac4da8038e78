"""The compare view's choice: thumbs up on the preferred answer, thumbs down on the others."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from analytics import services as analytics_services
from analytics.models import RequestFeedback
from analytics.outcome import RequestOutcome
from analytics.services import request_record
from chat.models import Conversation, Message
from chat.services import (
    AnswerNotRecorded,
    CompareVote,
    NotACompareAnswer,
    compare_choose,
    conversation_create,
)

pytestmark = pytest.mark.django_db


def _owner(name: str) -> int:
    return int(get_user_model().objects.create_user(name, password="pw").pk)


def _logged(request_id: uuid.UUID) -> None:
    request_record(
        outcome=RequestOutcome(
            created_at=timezone.now(),
            entry_point="chat",
            status="success",
            cost_state="reported",
            request_id=request_id,
        )
    )


def _answer(
    conversation: Conversation,
    *,
    group: uuid.UUID | None,
    content: str,
    logged: bool = True,
    request: bool = True,
) -> Message:
    request_id = uuid.uuid4() if request else None
    if request_id is not None and logged:
        _logged(request_id)
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=content,
        request_id=request_id,
        compare_group=group,
    )


def _comparison(owner_id: int, size: int = 3) -> list[Message]:
    conversation = conversation_create(owner_id=owner_id, title="compare")
    Message.objects.create(conversation=conversation, role="user", content="which is better?")
    group = uuid.uuid4()
    return [_answer(conversation, group=group, content=f"answer {i}") for i in range(size)]


def _votes() -> dict[uuid.UUID, bool]:
    return dict(RequestFeedback.objects.values_list("request__request_id", "positive"))


def test_choosing_votes_up_the_chosen_answer_and_down_the_others() -> None:
    owner_id = _owner("ana")
    a, b, c = _comparison(owner_id)

    votes = compare_choose(owner_id=owner_id, message_id=b.id)

    assert votes == (
        CompareVote(a.id, a.request_id, False),  # type: ignore[arg-type]
        CompareVote(b.id, b.request_id, True),  # type: ignore[arg-type]
        CompareVote(c.id, c.request_id, False),  # type: ignore[arg-type]
    )
    assert _votes() == {a.request_id: False, b.request_id: True, c.request_id: False}


def test_choosing_again_moves_the_votes_and_keeps_one_row_per_request() -> None:
    owner_id = _owner("ana")
    a, b, c = _comparison(owner_id)
    compare_choose(owner_id=owner_id, message_id=b.id)

    compare_choose(owner_id=owner_id, message_id=c.id)

    assert RequestFeedback.objects.count() == 3
    assert _votes() == {a.request_id: False, b.request_id: False, c.request_id: True}


def test_only_the_chosen_comparison_is_voted_on() -> None:
    owner_id = _owner("ana")
    a, b = _comparison(owner_id, size=2)
    other_a, other_b = _comparison(owner_id, size=2)
    plain = _answer(a.conversation, group=None, content="a plain answer")

    compare_choose(owner_id=owner_id, message_id=a.id)

    assert _votes() == {a.request_id: True, b.request_id: False}
    assert {other_a.request_id, other_b.request_id, plain.request_id}.isdisjoint(_votes())


def test_an_answer_of_a_group_without_a_request_is_left_out() -> None:
    owner_id = _owner("ana")
    a, b = _comparison(owner_id, size=2)
    lost = _answer(a.conversation, group=a.compare_group, content="never sent", request=False)

    votes = compare_choose(owner_id=owner_id, message_id=b.id)

    assert [(v.message_id, v.positive) for v in votes] == [(a.id, False), (b.id, True)]
    assert lost.id not in [v.message_id for v in votes]


def test_another_users_answer_is_not_found_and_nothing_is_written() -> None:
    a, _ = _comparison(_owner("bob"), size=2)

    with pytest.raises(Message.DoesNotExist):
        compare_choose(owner_id=_owner("ana"), message_id=a.id)

    assert not RequestFeedback.objects.exists()


def test_an_answer_outside_a_comparison_and_a_user_message_are_refused() -> None:
    owner_id = _owner("ana")
    conversation = conversation_create(owner_id=owner_id)
    plain = _answer(conversation, group=None, content="plain")
    question = Message.objects.create(conversation=conversation, role="user", content="q")

    for message in (plain, question):
        with pytest.raises(NotACompareAnswer, match="only an answer of a comparison"):
            compare_choose(owner_id=owner_id, message_id=message.id)

    assert not RequestFeedback.objects.exists()


def test_an_answer_without_a_request_is_refused() -> None:
    owner_id = _owner("ana")
    a, _ = _comparison(owner_id, size=2)
    lost = _answer(a.conversation, group=a.compare_group, content="never sent", request=False)

    with pytest.raises(AnswerNotRecorded):
        compare_choose(owner_id=owner_id, message_id=lost.id)

    assert not RequestFeedback.objects.exists()


def test_a_group_whose_log_row_is_missing_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analytics_services, "FEEDBACK_ROW_WAIT_S", 0.1)
    owner_id = _owner("ana")
    a, _ = _comparison(owner_id, size=2)
    late = _answer(a.conversation, group=a.compare_group, content="late", logged=False)

    with pytest.raises(analytics_services.RequestLog.DoesNotExist):
        compare_choose(owner_id=owner_id, message_id=a.id)

    assert late.request_id is not None
    assert not RequestFeedback.objects.exists()


# -- the endpoint -------------------------------------------------------------------------------


@pytest.fixture
def ana() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("ana", password="pw"))
    return client


def _prefer(client: Client, message_id: int) -> tuple[int, dict[str, object]]:
    page = client.get("/chat/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        f"/chat/messages/{message_id}/prefer/",
        data="{}",
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    if response["Content-Type"] != "application/json":
        return response.status_code, {}
    return response.status_code, response.json()


def _ana_id() -> int:
    return int(get_user_model().objects.get(username="ana").pk)


def test_endpoint_records_the_choice_and_answers_with_the_groups_votes(ana: Client) -> None:
    a, b = _comparison(_ana_id(), size=2)

    status, body = _prefer(ana, a.id)
    again_status, again = _prefer(ana, b.id)

    assert (status, body) == (
        200,
        {
            "message_id": a.id,
            "votes": [
                {"message_id": a.id, "positive": True},
                {"message_id": b.id, "positive": False},
            ],
        },
    )
    assert (again_status, again["votes"]) == (
        200,
        [{"message_id": a.id, "positive": False}, {"message_id": b.id, "positive": True}],
    )
    assert _votes() == {a.request_id: False, b.request_id: True}
    page = ana.get(f"/chat/{a.conversation_id}/")
    assert [(m.role, m.feedback) for m in page.context["thread"].messages] == [
        ("user", None),
        ("assistant", False),
        ("assistant", True),
    ]
    embedded = page.context["page_data"]["messages"]
    assert [m["feedback"] for m in embedded] == [None, False, True]


def test_endpoint_errors(ana: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analytics_services, "FEEDBACK_ROW_WAIT_S", 0.1)
    bobs, _ = _comparison(_owner("bob"), size=2)
    mine = conversation_create(owner_id=_ana_id())
    plain = _answer(mine, group=None, content="plain")
    group = uuid.uuid4()
    unsent = _answer(mine, group=group, content="unsent", request=False)
    unlogged = _answer(mine, group=group, content="unlogged", logged=False)

    assert _prefer(ana, bobs.id) == (404, {})
    assert _prefer(ana, 999_999) == (404, {})
    assert _prefer(ana, plain.id) == (
        400,
        {"error": "only an answer of a comparison can be preferred"},
    )
    assert _prefer(ana, unsent.id) == (
        409,
        {"error": "this answer has no request yet; try again when it is done"},
    )
    assert _prefer(ana, unlogged.id) == (
        409,
        {"error": "this comparison's requests are not recorded yet; try again in a moment"},
    )
    assert not RequestFeedback.objects.exists()


def test_endpoint_takes_post_with_a_csrf_token_from_a_logged_in_user(ana: Client) -> None:
    a, _ = _comparison(_ana_id(), size=2)
    url = f"/chat/messages/{a.id}/prefer/"

    assert ana.get(url).status_code == 405
    assert ana.post(url, data="{}", content_type="application/json").status_code == 403
    anonymous = Client().post(url)
    assert (anonymous.status_code, anonymous["Location"]) == (
        302,
        f"/accounts/login/?next={url}",
    )
    assert not RequestFeedback.objects.exists()
