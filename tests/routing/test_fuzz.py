"""Fuzzing both API doors through the production web process: no input a client can send gets
a server error, and every refusal is the door's JSON error envelope.

- The native API (`/api`) from its own OpenAPI document, with schemathesis: bodies that match
  the schema (positive) and bodies that break it (negative), with a valid key (a staff user's
  for the management API), plus a share of requests with the key missing or wrong.
- `/v1/chat/completions` from hand-written hypothesis strategies: wrong types in every field,
  huge numbers, long message lists, invalid UTF-8, deep nesting, bodies that are not JSON.

The upstream answers every request correctly, so any answer >= 500 is the gateway's own fault.
`FUZZ_EXAMPLES` sets the number of examples per strategy (default: a short run for `make test`);
`FUZZ_REPORT`, a file path, collects the answers' status codes per test (one JSON line each) for
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any, cast

import httpx
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet

from gateway.api import api
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.gateway_support import chat_path, gateway_registry, new_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SCHEMA = schemathesis.openapi.from_dict(api.get_openapi_schema(path_prefix="/api"))
# Each result is Ok(operation) or Err(why the schema could not give it); an Err fails here.
OPERATIONS = {
    op.label: op for op in (cast(Any, result).ok() for result in SCHEMA.get_all_operations())
}
NATIVE_ERROR_KEYS = {"code", "message", "details"}
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
# A refusal of a request that was logged also names its log row.
TRACE_ID = {"trace_id"}


def staff_key() -> str:
    get_user_model().objects.get_or_create(username="fuzz-staff", defaults={"is_staff": True})
    return new_key(owner_username="fuzz-staff")


def fuzz_settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture
def answering_upstream(upstream: UpstreamServer) -> UpstreamServer:
    gateway_registry(upstream)
    for name in ("alpha", "beta"):
        upstream.reply("POST", chat_path(name), Reply.sse(fixture("openai/chat_stream.sse")))
    return upstream


def report(name: str, seen: list[int]) -> None:
    """Adds one line of status counts to `FUZZ_REPORT`, when it names a file."""
    path = os.environ.get("FUZZ_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": name, "statuses": dict(Counter(seen))}) + "\n")


def traced(response: httpx.Response) -> set[str]:
    """A logged request's error names its row: `trace_id`, equal to the request-id header."""
    trace_id = response.headers.get("x-orchestrator-request-id")
    assert response.json()["error"].get("trace_id") == trace_id
    return {"trace_id"} if trace_id else set()


def assert_native_answer(response: httpx.Response, sent: str) -> None:
    assert response.status_code < 500, f"{response.status_code} for {sent}: {response.text[:500]}"
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}, sent
        assert set(body["error"]) == NATIVE_ERROR_KEYS | traced(response), sent
        assert body["error"]["code"] and body["error"]["message"], sent


def assert_openai_answer(response: httpx.Response, sent: str) -> None:
    assert response.status_code < 500, f"{response.status_code} for {sent}: {response.text[:500]}"
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}, sent
        assert set(body["error"]) == OPENAI_ERROR_KEYS | traced(response), sent
        assert body["error"]["message"], sent


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_native_api_from_its_openapi_document(
    live_server_url: str,
    answering_upstream: UpstreamServer,
    label: str,
    mode: schemathesis.GenerationMode,
) -> None:
    # The management API answers staff only: fuzzed with a staff key, its bodies are read.
    key = staff_key() if "/api/manage/" in label else new_key()
    operation = OPERATIONS[label]
    auth = st.sampled_from(
        [{"Authorization": f"Bearer {key}"}] * 8 + [{"Authorization": "Bearer wrong"}, {}]
    )
    seen: list[int] = []

    with httpx.Client(base_url=live_server_url, timeout=30) as client:

        @fuzz_settings()
        @given(case=operation.as_strategy(mode), headers=auth)
        def run(case: Any, headers: dict[str, str]) -> None:
            body = None if isinstance(case.body, NotSet) else case.body
            response = client.request(
                case.method,
                case.formatted_path,
                params=case.query or None,
                content=(
                    body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
                ),
                headers={"content-type": "application/json", **headers},
            )
            seen.append(response.status_code)
            assert_native_answer(response, f"{case.method} {case.formatted_path} {body!r:.300}")

        run()

    report(f"/api {label} {mode.value}", seen)
    assert len(seen) >= min(EXAMPLES, 10)


def _json_values(depth: int = 2) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=depth * 4,
    )


MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(max_size=60)}
)
WEIRD = _json_values()


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A request that starts valid and has some fields replaced by odd values."""
    body: dict[str, Any] = {
        "model": "auto",
        "messages": draw(st.lists(MESSAGE, min_size=1, max_size=3)),
    }
    optional = {
        "max_tokens": st.one_of(st.integers(min_value=-(2**64), max_value=2**64), WEIRD),
        "temperature": st.one_of(st.floats(), WEIRD),
        "top_p": st.one_of(st.floats(), WEIRD),
        "n": st.one_of(st.integers(min_value=-5, max_value=5), WEIRD),
        "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=6), WEIRD),
        "user": st.one_of(st.text(max_size=300), WEIRD),
        "seed": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), WEIRD),
        "metadata": WEIRD,
        "stream": st.one_of(st.just(False), WEIRD.filter(lambda v: v is not True)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)):
        body[name] = draw(optional[name])
    replaced = draw(st.sampled_from(["nothing", "model", "messages", "message", "role"]))
    if replaced == "model":
        body["model"] = draw(WEIRD)
    elif replaced == "messages":
        body["messages"] = draw(WEIRD)
    elif replaced == "message":
        body["messages"][0] = draw(WEIRD)
    elif replaced == "role":
        body["messages"][0]["role"] = draw(WEIRD)
    return body


def test_v1_chat_completions_property(
    live_server_url: str, answering_upstream: UpstreamServer
) -> None:
    key = new_key()
    seen: list[int] = []

    with httpx.Client(base_url=live_server_url, timeout=30) as client:

        @fuzz_settings()
        @given(body=chat_bodies())
        def run(body: dict[str, Any]) -> None:
            # NaN and infinities go out as JavaScript's literals, which are not JSON.
            response = client.post(
                "/v1/chat/completions",
                content=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
            )
            seen.append(response.status_code)
            assert_openai_answer(response, f"{body!r:.300}")

        run()

    report("/v1/chat/completions property", seen)
    # The strategy reaches both sides: answers and refusals.
    assert 200 in seen
    assert any(400 <= status < 500 for status in seen)


def _nested(depth: int) -> bytes:
    return b'{"model": "auto", "messages": ' + b"[" * depth + b"]" * depth + b"}"


RAW_BODIES = {
    "invalid utf-8": b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "lone surrogate": b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "not json": b"model=auto",
    "empty": b"",
    "a json string": b'"hello"',
    "a json list": b"[1, 2, 3]",
    "nan": b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    "huge integer": (
        b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": '
        + b"9" * 5000
        + b"}"
    ),
    "deep nesting": _nested(100_000),
    "ten thousand messages": json.dumps(
        {
            "model": "auto",
            "messages": [{"role": "user", "content": f"m{i}"} for i in range(10_000)],
        }
    ).encode(),
    "truncated": b'{"model": "auto", "messages": [{"role": "user", "content": "x"',
}


def test_odd_bodies_are_refused_without_a_server_error(
    live_server_url: str, answering_upstream: UpstreamServer
) -> None:
    key = new_key()
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    with httpx.Client(base_url=live_server_url, headers=headers, timeout=60) as client:
        for name, raw in RAW_BODIES.items():
            response = client.post("/v1/chat/completions", content=raw)
            assert_openai_answer(response, name)
            assert response.status_code == 400, (name, response.text[:300])
            # Ten thousand messages are well formed but fit no model's context window.
            code = (
                "context_length_exceeded" if name == "ten thousand messages" else "INVALID_REQUEST"
            )
            assert response.json()["error"]["code"] == code, name

            native = client.post(
                "/api/execute", content=raw.replace(b'"model": "auto", "messages"', b'"messages"')
            )
            assert_native_answer(native, name)
            assert native.status_code == 400, (name, native.text[:300])
            code = "TOKEN_LIMIT_EXCEEDED" if name == "ten thousand messages" else "INVALID_REQUEST"
            assert native.json()["error"]["code"] == code, name
