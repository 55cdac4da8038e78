from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from analytics.models import RequestLog
from chat.models import Conversation, Message
from chat.selectors import conversation_list, conversation_thread, model_options
from chat.services import (
    AnswerNotRecorded,
    NotACompareAnswer,
    compare_choose,
    conversation_create,
    conversation_delete,
    conversation_rename,
    feedback_give,
)


def _user_id(request: HttpRequest) -> int:
    user_id = request.user.pk
    if user_id is None:  # login_required keeps anonymous users out; this narrows the type
        raise PermissionDenied
    return int(user_id)


@login_required
def index(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    search = request.GET.get("q", "")
    thread = None
    if conversation_id is not None:
        try:
            thread = conversation_thread(
                owner_id=_user_id(request), conversation_id=conversation_id
            )
        except Conversation.DoesNotExist as missing:
            raise Http404("no such conversation") from missing
    options = model_options()
    page: dict[str, Any] = {
        "conversation_id": thread.id if thread else None,
        "model_choice": thread.model_choice if thread else "auto",
        "messages": [asdict(m) for m in thread.messages] if thread else [],
        "models": [asdict(o) for o in options],
    }
    return render(
        request,
        "chat/index.html",
        {
            "conversations": conversation_list(owner_id=_user_id(request), search=search),
            "thread": thread,
            "search": search,
            "options": options,
            "model_count": sum(1 for o in options if o.group == "model"),
            "page_data": page,
        },
    )


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    conversation = conversation_create(owner_id=_user_id(request))
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
@require_POST
def conversation_rename_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        conversation_rename(
            owner_id=_user_id(request),
            conversation_id=conversation_id,
            title=request.POST.get("title", ""),
        )
    except Conversation.DoesNotExist as missing:
        raise Http404("no such conversation") from missing
    return redirect("chat:conversation", conversation_id=conversation_id)


@login_required
@require_POST
def conversation_delete_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        conversation_delete(owner_id=_user_id(request), conversation_id=conversation_id)
    except Conversation.DoesNotExist as missing:
        raise Http404("no such conversation") from missing
    return redirect("chat:index")


@login_required
@require_POST
def message_feedback(request: HttpRequest, message_id: int) -> JsonResponse:
    try:
        positive = json.loads(request.body or b"{}").get("positive")
    except (ValueError, AttributeError):
        positive = None
    if not isinstance(positive, bool):
        return JsonResponse({"error": 'send {"positive": true} or {"positive": false}'}, status=400)
    try:
        feedback_give(owner_id=_user_id(request), message_id=message_id, positive=positive)
    except Message.DoesNotExist as missing:
        raise Http404("no such answer") from missing
    except RequestLog.DoesNotExist:
        return JsonResponse(
            {"error": "this answer's request is not recorded yet; try again in a moment"},
            status=409,
        )
    return JsonResponse({"message_id": message_id, "positive": positive})


@login_required
@require_POST
def message_prefer(request: HttpRequest, message_id: int) -> JsonResponse:
    """The compare view's choice: this answer is better than the others of its comparison."""
    try:
        votes = compare_choose(owner_id=_user_id(request), message_id=message_id)
    except Message.DoesNotExist as missing:
        raise Http404("no such answer") from missing
    except NotACompareAnswer as error:
        return JsonResponse({"error": str(error)}, status=400)
    except AnswerNotRecorded as error:
        return JsonResponse({"error": str(error)}, status=409)
    except RequestLog.DoesNotExist:
        return JsonResponse(
            {"error": "this comparison's requests are not recorded yet; try again in a moment"},
            status=409,
        )
    return JsonResponse(
        {
            "message_id": message_id,
            "votes": [{"message_id": v.message_id, "positive": v.positive} for v in votes],
        }
    )
