"""The Ollama door (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/version`): the
real `ollama` library and raw HTTP against the web process as deployed (`live_server_url`),
beside the native API that shares the `/api/` prefix."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from ninja.operation import PathView

from analytics.models import RequestLog
from analytics.pricing import Prices, cost_usd, usage_estimate
from gateway import ollama as ollama_door
from gateway import ollama_models
from gateway.fast_path import _api_views
from gateway.ollama_wire import OLLAMA_PATHS
from orchestrator_site.asgi import application
from routing.models import Budget, BudgetReservation
from tests.asgi_client import asgi_request
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key, wait_rows
from tests.routing.streams import openai_sse
from tests.routing.test_client_disconnect import raw_post, read_until

pytestmark = pytest.mark.django_db(transaction=True)
live = pytest.mark.slow
HELLO = [{"role": "user", "content": "Say hello"}]


def client(live_server_url: str, key: str) -> ollama.Client:
    return ollama.Client(host=live_server_url, headers={"Authorization": f"Bearer {key}"})


def post(live_server_url: str, path: str, body: Any, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{live_server_url}{path}", content=content, headers=headers, timeout=30)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def sent_to_alpha(upstream: UpstreamServer) -> list[dict[str, Any]]:
    return [r.json() for r in upstream.requests if r.path == chat_path("alpha")]


# --- the ollama library --------------------------------------------------------------------


@live
def test_chat_not_streamed_with_the_library_logs_one_row_with_its_tokens_and_cost(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Hel", "lo!"], usage=(1000, 200)))
    )
    key = new_key()

    answer = client(live_server_url, key).chat(model="auto", messages=HELLO, stream=False)

    assert answer.message.role == "assistant"
    assert answer.message.content == "Hello!"
    assert (answer.done, answer.done_reason) == (True, "stop")
    assert (answer.prompt_eval_count, answer.eval_count) == (1000, 200)
    assert answer.model == "auto"
    (row,) = wait_rows(1)
    assert (row.entry_point, row.status) == ("ollama", RequestLog.Status.SUCCESS)
    assert (row.input_tokens, row.output_tokens) == (1000, 200)
    assert row.cost_usd == Decimal("0.00325000")
    assert row.api_key_id is not None
    # Durations in nanoseconds, the pipeline's measures (the row's are taken a moment later).
    assert answer.total_duration is not None and answer.prompt_eval_duration is not None
    assert abs(answer.total_duration - row.latency_ms * 1_000_000) <= 5_000_000
    assert 0 < answer.prompt_eval_duration <= answer.total_duration
    assert answer.eval_duration == answer.total_duration - answer.prompt_eval_duration
    assert answer.load_duration == 0
    assert [s["model"] for s in sent_to_alpha(upstream)] == ["alpha-model"]


@live
def test_chat_streamed_with_the_library_maps_the_options(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["a", "b", "c"], usage=(7, 3)), chunk_delay_s=0.05),
    )
    key = new_key()

    parts = list(
        client(live_server_url, key).chat(
            model="auto",
            messages=[{"role": "system", "content": "Be brief."}, *HELLO],
            stream=True,
            options={"temperature": 0.2, "top_p": 0.9, "num_predict": 50, "stop": ["END"]},
            keep_alive="5m",
        )
    )

    assert [p.message.content for p in parts] == ["a", "b", "c", ""]
    assert [p.done for p in parts] == [False, False, False, True]
    last = parts[-1]
    assert (last.done_reason, last.prompt_eval_count, last.eval_count) == ("stop", 7, 3)
    (sent,) = sent_to_alpha(upstream)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"]) == (
        0.2,
        0.9,
        50,
        ["END"],
    )
    (row,) = wait_rows(1)
    assert (row.entry_point, row.status, row.output_tokens) == ("ollama", "success", 3)


@live
def test_generate_with_system_and_prompt_streamed_and_not(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["4"], usage=(20, 1))))
    key = new_key()
    ollama_client = client(live_server_url, key)

    whole = ollama_client.generate(
        model="auto", system="Answer with a digit.", prompt="2+2?", stream=False
    )
    pieces = list(ollama_client.generate(model="auto", prompt="2+2?", stream=True))

    assert (whole.response, whole.done, whole.done_reason) == ("4", True, "stop")
    assert (whole.prompt_eval_count, whole.eval_count) == (20, 1)
    assert [p.response for p in pieces] == ["4", ""]
    assert pieces[-1].done and pieces[-1].eval_count == 1
    first, second = sent_to_alpha(upstream)
    assert first["messages"] == [
        {"role": "system", "content": "Answer with a digit."},
        {"role": "user", "content": "2+2?"},
    ]
    assert second["messages"] == [{"role": "user", "content": "2+2?"}]
    rows = wait_rows(2)
    assert [(r.entry_point, r.status) for r in rows] == [("ollama", "success")] * 2


@live
async def test_async_client_names_a_model_with_ollamas_latest_tag(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(gateway_registry)(upstream)
    upstream.reply("POST", chat_path("beta"), Reply.sse(openai_sse(["beta here"], usage=(5, 2))))
    key = await sync_to_async(new_key)()
    aclient = ollama.AsyncClient(host=live_server_url, headers={"Authorization": f"Bearer {key}"})

    answer = await aclient.generate(model="beta:beta-model:latest", prompt="hi")
    streamed = await aclient.chat(model="beta-model", messages=HELLO, stream=True)
    pieces = [part.message.content async for part in streamed]

    assert (answer.response, answer.model) == ("beta here", "beta:beta-model:latest")
    assert "".join(p or "" for p in pieces) == "beta here"
    rows = await sync_to_async(wait_rows)(2)
    assert [r.requested_model for r in rows] == ["beta:beta-model", "beta-model"]
    assert {(r.entry_point, r.model_name) for r in rows} == {("ollama", "beta-model")}


@live
def test_tags_show_and_version_with_the_library(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()
    ollama_client = client(live_server_url, key)

    listed = ollama_client.list()
    shown = ollama_client.show("alpha:alpha-model:latest")
    policy = ollama_client.show("gateway-policy")
    with pytest.raises(ollama.ResponseError) as missing:
        ollama_client.show("llama3")
    version = httpx.get(f"{live_server_url}/api/version", timeout=30)

    # The names every door accepts; the disabled baseline is not one of them.
    assert [m.model for m in listed.models] == [
        "auto",
        "gateway-policy",
        "alpha:alpha-model",
        "beta:beta-model",
    ]
    families = [m.details.family for m in listed.models if m.details]
    assert families == ["policy", "policy", "openai_compatible", "openai_compatible"]
    assert all(m.size == 0 and m.modified_at is not None for m in listed.models)
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo == {
        "general.architecture": "openai_compatible",
        "general.basename": "alpha:alpha-model",
        "openai_compatible.context_length": 8192,
    }
    assert policy.details is not None and policy.details.family == "policy"
    assert missing.value.status_code == 404
    assert missing.value.error == (
        'model "llama3" not found; GET /api/tags lists the models this gateway serves'
    )
    assert (version.status_code, version.json()) == (200, {"version": "0.12.0"})


@live
def test_a_request_without_a_key_is_refused_by_the_library_and_the_list(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    anonymous = ollama.Client(host=live_server_url)

    with pytest.raises(ollama.ResponseError) as chat:
        anonymous.chat(model="auto", messages=HELLO)
    with pytest.raises(ollama.ResponseError) as tags:
        anonymous.list()

    for refused in (chat.value, tags.value):
        assert refused.status_code == 401
        assert refused.error == "Missing, invalid or revoked API key (Authorization: Bearer <key>)."
    assert RequestLog.objects.count() == 0
    assert upstream.requests == []


# --- the wire ------------------------------------------------------------------------------


@live
def test_chat_streams_ndjson_by_default_line_by_line(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo"], usage=(9, 2)), chunk_delay_s=0.05),
    )
    key = new_key()

    response = post(live_server_url, "/api/chat", {"model": "auto:latest", "messages": HELLO}, key)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["x-orchestrator-model"] == "alpha:alpha-model"
    first, second, last = lines(response)
    for piece, text in ((first, "Hel"), (second, "lo")):
        assert list(piece) == ["model", "created_at", "message", "done"]
        assert piece["model"] == "auto:latest"
        assert piece["message"] == {"role": "assistant", "content": text}
        assert piece["done"] is False
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", piece["created_at"])
    assert list(last) == [
        "model",
        "created_at",
        "message",
        "done_reason",
        "done",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
        "orchestrator",
    ]
    assert last["message"] == {"role": "assistant", "content": ""}
    assert (last["done"], last["done_reason"]) == (True, "stop")
    assert (last["prompt_eval_count"], last["eval_count"]) == (9, 2)
    (row,) = wait_rows(1)
    assert abs(last["total_duration"] - row.latency_ms * 1_000_000) <= 5_000_000
    assert last["total_duration"] == last["prompt_eval_duration"] + last["eval_duration"]
    assert last["eval_duration"] >= 50_000_000  # the second piece came 50 ms after the first
    assert last["orchestrator"]["request_id"] == response.headers["x-orchestrator-request-id"]
    assert (row.requested_model, row.entry_point) == ("auto", "ollama")


@live
def test_generate_not_streamed_is_one_object_and_length_is_the_done_reason(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    cut = openai_sse(["one two"], usage=(4, 2)).replace(
        b'"finish_reason": "stop"', b'"finish_reason": "length"'
    )
    upstream.reply("POST", chat_path("alpha"), Reply.sse(cut))
    key = new_key()

    response = post(
        live_server_url,
        "/api/generate",
        {"model": "auto", "prompt": "Count", "stream": False, "options": {"num_predict": 2}},
        key,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert (body["response"], body["done"], body["done_reason"]) == ("one two", True, "length")
    assert (body["prompt_eval_count"], body["eval_count"]) == (4, 2)
    assert "message" not in body
    assert sent_to_alpha(upstream)[0]["max_tokens"] == 2


@live
def test_a_request_with_nothing_to_answer_loads_the_model_and_logs_nothing(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    chat = post(live_server_url, "/api/chat", {"model": "auto", "messages": []}, key)
    generate = post(live_server_url, "/api/generate", {"model": "beta-model"}, key)
    unknown = post(live_server_url, "/api/generate", {"model": "llama3"}, key)

    assert chat.status_code == generate.status_code == 200
    assert chat.json()["message"] == {"role": "assistant", "content": ""}
    assert generate.json()["response"] == ""
    assert {chat.json()["done_reason"], generate.json()["done_reason"]} == {"load"}
    assert unknown.status_code == 404
    time.sleep(0.3)
    assert RequestLog.objects.count() == 0
    assert upstream.requests == []


BAD_INPUT = [
    # (path, body, status, error)
    ("/api/chat", {"messages": HELLO}, 400, "model is required (a model, a policy name or 'auto')"),
    ("/api/chat", {"model": 7, "messages": HELLO}, 400, "model must be a string"),
    ("/api/chat", {"model": "auto", "messages": "hi"}, 400, "messages must be a list of messages"),
    (
        "/api/chat",
        {"model": "auto", "messages": [{"role": "robot", "content": "hi"}]},
        400,
        "messages[0].role must be one of system, user, assistant",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": [{"role": "user", "content": 3}]},
        400,
        "messages[0].content must be a string",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]},
        400,
        "messages[0].images[0] is not a PNG, JPEG, GIF or WEBP image (read from its bytes)",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": HELLO, "tools": [{"type": "function"}]},
        400,
        "tools[0].function must be an object",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": HELLO, "think": True},
        400,
        "think is not supported by this gateway",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": [*HELLO, {"role": "tool", "content": "18"}]},
        400,
        "messages[1] answers no open tool call of the assistant message before it",
    ),
    (
        "/api/chat",
        {
            "model": "auto",
            "messages": [
                *HELLO,
                {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
                {"role": "tool", "content": "18", "tool_name": "g"},
            ],
        },
        400,
        "messages[2] answers no open tool call to 'g' of the assistant message before it",
    ),
    (
        "/api/chat",
        {
            "model": "auto",
            "messages": [
                *HELLO,
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "f", "arguments": "x"}}],
                },
            ],
        },
        400,
        "messages[1].tool_calls[0].function.arguments must be an object",
    ),
    (
        "/api/chat",
        {"model": "auto", "messages": HELLO, "stream": "yes"},
        400,
        "stream must be a boolean",
    ),
    (
        "/api/generate",
        {"model": "auto", "prompt": "hi", "options": {"temperature": "hot"}},
        400,
        "options.temperature must be a number between 0 and 2",
    ),
    (
        "/api/generate",
        {"model": "auto", "prompt": "hi", "options": {"num_predict": 0}},
        400,
        "options.num_predict must be an integer from 1 to 1,000,000 (or -1 for no limit)",
    ),
    (
        "/api/generate",
        {"model": "auto", "prompt": "hi", "options": "fast"},
        400,
        "options must be an object",
    ),
    ("/api/generate", {"model": "auto", "prompt": ["hi"]}, 400, "prompt must be a string"),
    (
        "/api/generate",
        {"model": "auto", "prompt": "hi", "format": "yaml"},
        400,
        'format must be "json" or a JSON Schema object',
    ),
    ("/api/generate", [1, 2], 400, "body must be a JSON object"),
    ("/api/generate", b'{"model": "auto",', 400, "body: not valid JSON"),
    ("/api/chat", {"model": "llama3", "messages": HELLO}, 404, 'model "llama3" not found'),
    (
        "/api/generate",
        {"model": "nope:model:latest", "prompt": "hi", "stream": False},
        404,
        'model "nope:model:latest" not found',
    ),
]


@live
def test_bad_input_is_refused_in_ollamas_shape_and_logged_once(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    key = new_key()

    answers = [post(live_server_url, path, body, key) for path, body, _, _ in BAD_INPUT]

    for answer, (path, body, status, error) in zip(answers, BAD_INPUT, strict=True):
        assert answer.status_code == status, (path, body, answer.text)
        assert list(answer.json()) == ["error"]
        assert error in answer.json()["error"], (error, answer.json())
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
    rows = wait_rows(len(BAD_INPUT))
    assert len(rows) == len(BAD_INPUT)
    assert {(r.entry_point, r.status, r.error_code) for r in rows} == {
        ("ollama", "invalid", "INVALID_REQUEST")
    }
    ids = {str(r.request_id) for r in rows}
    assert {a.headers["x-orchestrator-request-id"] for a in answers} == ids
    assert upstream.requests == []


@live
def test_an_oversized_body_and_a_wrong_method_are_refused_in_ollamas_shape(
    live_server_url: str,
) -> None:
    key = new_key()
    big = b'{"model": "auto", "prompt": "' + b"x" * (2 * 1024 * 1024 + 1) + b'"}'

    oversized = post(live_server_url, "/api/generate", big, key)
    wrong_method = httpx.get(f"{live_server_url}/api/chat", timeout=30)
    show_by_get = httpx.get(f"{live_server_url}/api/show", timeout=30)

    assert oversized.status_code == 413
    assert oversized.json() == {
        "error": f"Request body of {len(big)} bytes is over the limit of 2097152 bytes."
    }
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"error": "Use POST."})
    assert show_by_get.status_code == 405
    assert RequestLog.objects.count() == 0


@live
def test_a_failure_after_the_first_piece_is_an_error_line(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    # Two pieces, then the connection is reset: the answer cannot fall back any more.
    upstream.reply(
        "POST",
        chat_path("alpha"),
        Reply.sse(openai_sse(["Hel", "lo", "!"], usage=(3, 3))).but(reset_after_chunks=2),
    )
    key = new_key()

    response = post(live_server_url, "/api/chat", {"model": "auto", "messages": HELLO}, key)

    first, last = lines(response)
    assert first["message"]["content"] == "Hel"
    assert list(last) == ["error"]
    (row,) = wait_rows(1)
    assert (row.entry_point, row.status) == ("ollama", "partial")


@live
def test_a_budget_refusal_is_ollamas_402_with_its_logged_request_id(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    Budget.objects.create(name="tiny", limit_usd=Decimal("0.00000001"))
    key = new_key()

    # The key as `x-api-key`, the other header a key may come in.
    refused = httpx.post(
        f"{live_server_url}/api/generate",
        json={"model": "auto", "prompt": "costly"},
        headers={"x-api-key": key},
        timeout=30,
    )

    assert refused.status_code == 402
    assert list(refused.json()) == ["error"]
    assert "tiny" in refused.json()["error"]
    (row,) = wait_rows(1)
    assert (row.entry_point, row.status) == ("ollama", RequestLog.Status.BUDGET_REFUSED)
    assert refused.headers["x-orchestrator-request-id"] == str(row.request_id)
    assert upstream.requests == []


# --- hang-ups ------------------------------------------------------------------------------


@live
def test_a_hang_up_mid_stream_leaves_one_cancelled_row_charged_for_what_was_received(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    answer = openai_sse(["Hel", "lo", " there"], usage=(9, 3))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(answer, stall_after_chunks=2, stall_s=5))
    key = new_key()

    sock = raw_post(live_server_url, "/api/chat", {"model": "auto", "messages": HELLO}, key)
    read_until(sock, b'"content":"Hel"')
    sock.close()

    (row,) = _closed_rows(1)
    assert (row.entry_point, row.status, row.error_code) == ("ollama", "cancelled", "CANCELLED")
    counted = usage_estimate(prompt="user: Say hello", completion="Hel")
    assert (row.input_tokens, row.output_tokens, row.cost_state) == (
        counted.input,
        counted.output,
        "estimated",
    )
    assert row.cost_usd == cost_usd(counted, Prices(Decimal("1.25"), Decimal("10")))


@live
def test_a_hang_up_before_the_upstream_answers_a_generate_leaves_one_cancelled_row(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(openai_sse(["late"]), delay_s=5))
    key = new_key()

    sock = raw_post(
        live_server_url, "/api/generate", {"model": "auto", "prompt": "hi", "stream": False}, key
    )
    deadline = time.monotonic() + 10
    while not upstream.requests:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sock.close()

    (row,) = _closed_rows(1)
    assert (row.entry_point, row.status, row.cost_usd) == ("ollama", "cancelled", None)


def _closed_rows(expected: int) -> list[RequestLog]:
    rows = wait_rows(expected)
    time.sleep(0.3)  # a second row, if one were coming, would land by now
    assert RequestLog.objects.count() == expected
    assert BudgetReservation.objects.filter(state="held").count() == 0
    return rows


# --- beside the native API -----------------------------------------------------------------

SAMPLES = {
    "int": "7",
    "str": "sample",
    "slug": "sample",
    "path": "a/b",
    "uuid": "12345678-1234-5678-1234-567812345678",
}
# Routes that replace a library's route on purpose: the login page with the throttled form,
# before `django.contrib.auth.urls` (whose own login route it shadows).
OVERRIDDEN = {"accounts/login/": "login"}


def _routes(
    patterns: list[URLPattern | URLResolver], prefix: str = ""
) -> list[tuple[str, URLPattern]]:
    """Every route of the URLconf as `(sample path, pattern)`, each parameter filled in."""
    found = []
    for pattern in patterns:
        if isinstance(pattern.pattern, RegexPattern):
            route = _regex_sample(str(pattern.pattern))
        else:
            assert isinstance(pattern.pattern, RoutePattern)
            route = re.sub(
                r"<(?:(\w+):)?\w+>", lambda m: SAMPLES[m.group(1) or "str"], str(pattern.pattern)
            )
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, prefix + route)
        else:
            found.append((prefix + route, pattern))
    return found


def _regex_sample(regex: str) -> str:
    """A path `regex` matches: each named group filled with a sample that its own expression
    matches (the admin's `(?P<app_label>auth|...)`, a catch-all's `(?P<url>.*)`)."""

    def group(match: re.Match[str]) -> str:
        inner = match.group(1)
        for candidate in ("sample", "a/b", "7", inner.split("|")[0]):
            if re.fullmatch(inner, candidate):
                return candidate
        raise AssertionError(f"no sample for {inner!r} in {regex!r}: add one")

    sample = re.sub(r"\(\?P<\w+>([^()]*)\)", group, regex).removeprefix("^").removesuffix("$")
    assert re.fullmatch(regex.removeprefix("^"), sample), (regex, sample)
    return sample


def _answers(pattern: URLPattern, func: Any) -> bool:
    """Whether `func` is `pattern`'s view: itself, or one of the native API's path views over
    the same operations (django-ninja gives each method of a path a pattern of its own, all
    dispatching by method: GET and POST of /api/manage/providers)."""
    return func is pattern.callback or (
        _path_view(func) is not None and _path_view(func) is _path_view(pattern.callback)
    )


def _path_view(func: Any) -> PathView | None:
    cells = getattr(func, "__closure__", None) or ()
    return next((c.cell_contents for c in cells if isinstance(c.cell_contents, PathView)), None)


def test_every_route_answers_its_own_path_so_no_two_routes_collide() -> None:
    routes = _routes(get_resolver().url_patterns)
    paths = {path for path, _ in routes}

    shadowed = []
    for path, pattern in routes:
        match = resolve("/" + path)
        if not _answers(pattern, match.func) and OVERRIDDEN.get(path) != match.url_name:
            shadowed.append(
                f"/{path}: {pattern.name or pattern.callback} is answered by {match.view_name}"
            )

    assert shadowed == []
    # The Ollama door and the native API share /api/: both sets are there, and each answers.
    assert {p[1:] for p in OLLAMA_PATHS} <= paths
    assert {"api/execute", "api/batch", "api/batch/sample", "api/docs", "api/openapi.json"} <= paths
    assert resolve("/api/chat").func is ollama_door.chat
    assert resolve("/api/tags").func is ollama_models.tags
    assert resolve("/api/execute").url_name == "execute"
    # The ASGI layer's fast path takes exactly the Ollama paths of /api/, with their views.
    fast = _api_views()
    assert {p for p in fast if p.startswith("/api/")} == OLLAMA_PATHS
    assert all(resolve(p).func is view for p, view in fast.items())


async def test_the_native_api_still_answers_beside_the_door() -> None:
    native = await asgi_request(application, "POST", "/api/execute", body=b"{}")
    docs = await asgi_request(application, "GET", "/api/openapi.json")
    version = await asgi_request(application, "GET", "/api/version")

    assert native.status == 401
    assert json.loads(native.body)["error"]["code"] == "AUTHENTICATION_FAILED"
    assert docs.status == 200
    assert "/api/execute" in json.loads(docs.body)["paths"]
    assert json.loads(version.body) == {"version": "0.12.0"}
    # The door takes the fast path: none of the site's middleware headers.
    assert b"x-frame-options" not in version.headers
    assert native.headers[b"x-frame-options"] == b"DENY"


@pytest.mark.parametrize("path", sorted(OLLAMA_PATHS))
async def test_a_foreign_host_is_refused_in_ollamas_shape(path: str) -> None:
    response = await asgi_request(application, "POST", path, host=b"evil.example")

    assert response.status == 400
    assert json.loads(response.body) == {
        "error": "Host 'evil.example' is not served here (ALLOWED_HOSTS)."
    }


async def test_a_body_without_length_over_the_limit_is_refused_while_it_arrives(
    settings,
) -> None:
    from asgiref.testing import ApplicationCommunicator

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/api/chat",
        "raw_path": b"/api/chat",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    for _ in range(3):
        await communicator.send_input(
            {"type": "http.request", "body": b"x" * 400, "more_body": True}
        )

    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    await communicator.wait(5)

    assert start["status"] == 413
    assert json.loads(body["body"]) == {"error": "Request body is over the limit of 1000 bytes."}


def test_the_hang_up_gate_covers_the_doors_that_answer() -> None:
    from routing.hang_up import DOOR_PATHS

    assert {"/api/chat", "/api/generate"} <= DOOR_PATHS
    assert not {"/api/tags", "/api/show", "/api/version"} & DOOR_PATHS


@live
def test_the_docs_snippet_for_the_ollama_library_runs(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    gateway_registry(upstream)
    upstream.reply(
        "POST", chat_path("alpha"), Reply.sse(openai_sse(["Hi", " there"], usage=(3, 2)))
    )
    key = new_key()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    (snippet,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", docs, re.S)
        if "from ollama import Client" in block
    ]
    code = snippet.replace("http://127.0.0.1:8000", live_server_url).replace("<the key>", key)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/api.md", "exec"), {})

    assert printed.getvalue() == "Hi there\nHi there"
    rows = wait_rows(2)
    assert [(r.entry_point, r.status) for r in rows] == [("ollama", "success")] * 2
