from __future__ import annotations

import json
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
from chat.services import conversation_create
from providers.models import LLMModel, Provider
from routing.models import RoutingPolicy

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("ana", password="pw"))
    return client


@pytest.fixture
def bob_conversation() -> Conversation:
    bob = get_user_model().objects.create_user("bob", password="pw")
    conversation = conversation_create(owner_id=bob.id, title="bob's secrets")
    Message.objects.create(conversation=conversation, role="user", content="my password is 1234")
    return conversation


def _answer(conversation: Conversation) -> Message:
    request_id = uuid.uuid4()
    request_record(
        outcome=RequestOutcome(
            created_at=timezone.now(),
            entry_point="chat",
            status="success",
            cost_state="reported",
            request_id=request_id,
        )
    )
    return Message.objects.create(
        conversation=conversation, role="assistant", content="hi", request_id=request_id
    )


def test_new_rename_and_delete(ana: Client) -> None:
    response = ana.post("/chat/new/")
    conversation = Conversation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/chat/{conversation.id}/"

    ana.post(f"/chat/{conversation.id}/rename/", {"title": "  Trip plans  "})
    conversation.refresh_from_db()
    assert conversation.title == "Trip plans"

    page = ana.get(f"/chat/{conversation.id}/")
    assert page.status_code == 200
    assert page.context["thread"].title == "Trip plans"
    assert [c.title for c in page.context["conversations"]] == ["Trip plans"]

    response = ana.post(f"/chat/{conversation.id}/delete/")
    assert response["Location"] == "/chat/"
    assert not Conversation.objects.exists()


def test_search_matches_titles_and_message_text(ana: Client) -> None:
    owner_id = get_user_model().objects.get(username="ana").id
    paris = conversation_create(owner_id=owner_id, title="Paris")
    other = conversation_create(owner_id=owner_id, title="Other")
    Message.objects.create(conversation=other, role="user", content="what about PARIS in May?")
    conversation_create(owner_id=owner_id, title="Berlin")

    titles = [c.title for c in ana.get("/chat/?q=paris").context["conversations"]]

    assert sorted(titles) == sorted([paris.title, other.title])


def test_other_users_conversations_are_unreachable(
    ana: Client, bob_conversation: Conversation
) -> None:
    cid = bob_conversation.id
    answer = _answer(bob_conversation)

    assert "bob's secrets" not in ana.get("/chat/").content.decode()
    assert ana.get("/chat/?q=password").context["conversations"] == []
    assert ana.get(f"/chat/{cid}/").status_code == 404
    assert ana.post(f"/chat/{cid}/rename/", {"title": "mine now"}).status_code == 404
    assert ana.post(f"/chat/{cid}/delete/").status_code == 404
    feedback = ana.post(
        f"/chat/messages/{answer.id}/feedback/",
        data=json.dumps({"positive": False}),
        content_type="application/json",
    )
    assert feedback.status_code == 404
    bob_conversation.refresh_from_db()
    assert bob_conversation.title == "bob's secrets"
    assert not RequestFeedback.objects.exists()


def test_feedback_is_stored_against_the_request_and_can_change(ana: Client) -> None:
    owner_id = get_user_model().objects.get(username="ana").id
    answer = _answer(conversation_create(owner_id=owner_id))
    url = f"/chat/messages/{answer.id}/feedback/"

    first = ana.post(url, data=json.dumps({"positive": True}), content_type="application/json")
    second = ana.post(url, data=json.dumps({"positive": False}), content_type="application/json")
    bad = ana.post(url, data=json.dumps({"positive": "yes"}), content_type="application/json")

    assert first.json() == {"message_id": answer.id, "positive": True}
    assert second.status_code == 200
    assert bad.status_code == 400
    assert list(RequestFeedback.objects.values_list("request_id", "positive")) == [
        (answer.request_id, False)
    ]
    page = ana.get(f"/chat/{answer.conversation_id}/")
    assert [m.feedback for m in page.context["thread"].messages] == [False]


def test_feedback_on_an_answer_whose_request_is_not_recorded_yet_asks_to_retry(
    ana: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics_services, "FEEDBACK_ROW_WAIT_S", 0.1)
    owner_id = get_user_model().objects.get(username="ana").id
    conversation = conversation_create(owner_id=owner_id)
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content="hi", request_id=uuid.uuid4()
    )

    response = ana.post(
        f"/chat/messages/{answer.id}/feedback/",
        data=json.dumps({"positive": True}),
        content_type="application/json",
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "this answer's request is not recorded yet; try again in a moment"
    }
    assert not RequestFeedback.objects.exists()


def test_page_embeds_the_thread_with_sanitised_html(ana: Client) -> None:
    owner_id = get_user_model().objects.get(username="ana").id
    conversation = conversation_create(owner_id=owner_id, title="<b>bold</b> title")
    Message.objects.create(
        conversation=conversation, role="assistant", content="<script>alert(1)</script> **ok**"
    )

    page = ana.get(f"/chat/{conversation.id}/").content.decode()

    assert "<script>alert(1)" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; title" in page
    assert "\\u003Cp\\u003E\\u0026lt;script\\u0026gt;alert(1)" in page
    assert "\\u003Cstrong\\u003Eok\\u003C/strong\\u003E" in page


def test_anonymous_users_are_sent_to_login() -> None:
    response = Client().get("/chat/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/chat/"


def test_stored_local_answer_reads_free_and_carries_its_explanation(ana: Client) -> None:
    owner_id = get_user_model().objects.get(username="ana").id
    conversation = conversation_create(owner_id=owner_id, title="colours")
    trace = {"policy": "balanced", "request": {"task_type": "chat"}, "chain": ["local:smol"]}
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Red",
        model_ref="local:smol",
        badge={
            "locality": "local",
            "cost_usd": "0E-12",
            "cost_state": "estimated",
            "cost_label": "≈ $0.000000 (estimated)",
            "decision_trace": trace,
        },
    )

    response = ana.get(f"/chat/{conversation.id}/")

    [answer] = response.context["page_data"]["messages"]
    assert (answer["badge"]["cost_label"], answer["badge"]["cost_kind"]) == (
        "free (local)",
        "free",
    )
    assert answer["explanation"] == [
        {"label": "Model", "text": "local:smol"},
        {"label": "Policy", "text": "balanced"},
        {"label": "Task", "text": "chat"},
        {"label": "Fallbacks", "text": "none"},
        {"label": "Guards", "text": "none applied"},
    ]


def test_with_one_model_compare_offers_policies_and_temperatures(ana: Client) -> None:
    provider = Provider.objects.create(name="local", kind="openai_compatible", locality="local")
    LLMModel.objects.create(provider=provider, name="smol", tier="small_local")
    RoutingPolicy.objects.create(name="balanced", is_default=True)

    page = ana.get("/chat/").content.decode()

    assert '<input type="checkbox" name="compare" value="balanced">' in page
    assert '<input type="checkbox" name="compare" value="local:smol">' in page
    assert '<input type="checkbox" id="compare-temperatures">' in page
    assert "With one model enabled, compare two policies, or the model at two temperatures" in page
    assert "onsubmit=" not in page and "<script>" not in page
