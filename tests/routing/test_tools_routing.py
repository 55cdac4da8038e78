"""A request with tools (or asking for a JSON answer) goes only to models marked for it and is
refused with its own code, naming the field, when none can take it: routed, named, or by its own
chain. The engine is pure, so those run on plain values. Then the walk of the chain: tool calls
streamed by a real upstream reach the events and the outcome, and a model whose protocol cannot
carry what the request asks is passed over for one of another kind."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from decimal import Decimal

import pytest

from providers.adapters.registry import adapter_for
from providers.adapters.types import (
    ChatRequest,
    Endpoint,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from routing.engine import decide
from routing.engine.values import CapabilityRefused, ModelSpec, RegistrySnapshot, RouteRequest
from routing.pipeline.events import Delta, Fallback, GatewayRequest, Started
from routing.pipeline.execution import (
    ChainContext,
    ChainOutcome,
    ModelRuntime,
    RetryPolicy,
    execute_chain,
)
from routing.pipeline.ledger import answer_text, prompt_text
from tests.providers.upstream_server import Reply, UpstreamServer, fixture
from tests.routing.factories import BIG, FLASH, GPT4O, MINI, OFF, POLICY, SONNET, TINY, snapshot
from tests.routing.streams import openai_sse

CALLING = {"openai:gpt-4o", "gemini:flash", "local:big"}
JSON = {"openai:mini"}
REGISTRY = RegistrySnapshot.build(
    tuple(
        replace(m, accepts_tools=m.ref in CALLING, accepts_json_output=m.ref in JSON)
        for m in (TINY, BIG, MINI, GPT4O, SONNET, FLASH, OFF)
    )
)


def request(needs: tuple[str, ...] = ("tools",), **kw: object) -> RouteRequest:
    return RouteRequest(
        task_type="general",
        complexity="simple",
        prompt_tokens=100,
        needs=needs,
        **kw,  # type: ignore[arg-type]
    )


def test_a_routed_request_with_tools_keeps_to_the_models_that_call_them() -> None:
    decision = decide(request(), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == ["local:big", "gemini:flash", "openai:gpt-4o"]
    skipped = {c["model"]: c["reason"] for c in decision.trace["candidates"] if not c["kept"]}
    assert skipped["local:tiny"] == "does not accept tools"
    assert skipped["openai:mini"] == "does not accept tools"
    assert decision.trace["request"]["needs"] == ["tools"]


def test_a_request_for_json_keeps_to_the_models_that_give_it() -> None:
    decision = decide(request(("json_output",)), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == ["openai:mini"]
    skipped = {c["model"]: c["reason"] for c in decision.trace["candidates"] if not c["kept"]}
    assert skipped["gemini:flash"] == "does not accept JSON output"


def test_without_needs_the_same_request_keeps_its_whole_chain() -> None:
    decision = decide(request(()), POLICY, snapshot(), REGISTRY)

    assert len(decision.chain) == 5
    assert "needs" not in decision.trace["request"]


def test_tools_and_json_together_that_no_model_has_are_refused_for_the_first_lacking() -> None:
    with pytest.raises(CapabilityRefused) as refused:
        decide(request(("tools", "json_output")), POLICY, snapshot(), REGISTRY)

    # Each capability exists somewhere, but no model has both.
    assert (refused.value.code, refused.value.field) == ("TOOLS_NOT_SUPPORTED", "tools")
    assert str(refused.value) == (
        "this request uses tools (tools, tool_calls or tool messages) and asks for a JSON "
        "answer (response_format), and no enabled model accepts tools and JSON output together"
    )
    assert refused.value.decision.chain == ()


def test_no_model_that_calls_tools_is_a_refusal_with_its_code_and_field() -> None:
    none = RegistrySnapshot.build(tuple(replace(m, accepts_tools=False) for m in REGISTRY.models))

    with pytest.raises(CapabilityRefused) as refused:
        decide(request(), POLICY, snapshot(), none)

    assert (refused.value.code, refused.value.field) == ("TOOLS_NOT_SUPPORTED", "tools")
    assert str(refused.value) == (
        "this request uses tools (tools, tool_calls or tool messages), and no enabled model "
        "accepts tools (mark one that does in the admin: accepts tools)"
    )
    assert refused.value.decision.trace["outcome"] == "tools: no model accepts tools"


def test_a_private_request_with_tools_needs_a_local_model_that_calls_them() -> None:
    no_local = RegistrySnapshot.build(
        tuple(
            replace(m, accepts_tools=m.ref in CALLING and not m.is_local) for m in REGISTRY.models
        )
    )

    with pytest.raises(CapabilityRefused) as refused:
        decide(request(local_only=("request",)), POLICY, snapshot(), no_local)

    assert str(refused.value) == (
        "this request uses tools (tools, tool_calls or tool messages), and no enabled local "
        "model accepts tools (mark one that does in the admin: accepts tools)"
    )


def test_no_model_for_json_is_refused_naming_response_format() -> None:
    with pytest.raises(CapabilityRefused) as refused:
        decide(request(("json_output",), override="openai:gpt-4o"), POLICY, snapshot(), REGISTRY)

    assert (refused.value.code, refused.value.field) == (
        "JSON_OUTPUT_NOT_SUPPORTED",
        "response_format",
    )
    assert str(refused.value) == (
        "this request asks for a JSON answer (response_format), and openai:gpt-4o does not "
        "accept JSON output"
    )
    assert refused.value.decision.trace["candidates"] == [
        {
            "model": "openai:gpt-4o",
            "id": GPT4O.id,
            "source": "override",
            "kept": False,
            "reason": "does not accept JSON output",
        }
    ]


def test_a_requested_chain_keeps_its_models_that_call_tools_or_is_refused() -> None:
    chain = ("openai:mini", "gemini:flash", "local:tiny")
    decision = decide(request(fallback_chain=chain), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in decision.chain] == ["gemini:flash"]
    reasons = {c["model"]: c["reason"] for c in decision.trace["candidates"]}
    assert reasons == {
        "openai:mini": "does not accept tools",
        "gemini:flash": "",
        "local:tiny": "does not accept tools",
    }
    with pytest.raises(CapabilityRefused) as refused:
        decide(request(fallback_chain=("openai:mini", "local:tiny")), POLICY, snapshot(), REGISTRY)
    assert str(refused.value) == (
        "this request uses tools (tools, tool_calls or tool messages), and no model of the "
        "requested chain accepts tools"
    )


def test_a_conversation_with_tool_turns_uses_tools_even_without_tools() -> None:
    call = ToolCall(id="c1", name="get_time", arguments="{}")
    turns = (
        Message("user", "Time?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "14:05", tool_call_id="c1"),
    )

    assert GatewayRequest(messages=turns, entry_point="openai").uses_tools
    assert not GatewayRequest(messages=turns[:1], entry_point="openai").uses_tools


def test_the_log_text_holds_the_calls_and_the_tools() -> None:
    call = ToolCall(id="c1", name="get_time", arguments='{"zone":"CET"}')
    turns = (Message("user", "Time?"), Message("assistant", "Checking.", tool_calls=(call,)))
    tool = Tool(name="get_time", description="Time of a zone", parameters={"type": "object"})

    assert prompt_text(turns, (tool,)) == (
        "user: Time?\n\nassistant: Checking.\n"
        'tool_calls: [{"id":"c1","name":"get_time","arguments":"{\\"zone\\":\\"CET\\"}"}]\n\n'
        'tools: [{"name":"get_time","description":"Time of a zone",'
        '"parameters":{"type":"object"}}]'
    )
    assert answer_text(ChainOutcome(text="", tool_calls=(call,))) == (
        'tool_calls: [{"id":"c1","name":"get_time","arguments":"{\\"zone\\":\\"CET\\"}"}]'
    )
    assert answer_text(ChainOutcome(text="Hi")) == "Hi"


# The walk of the chain, against a real upstream.

NO_WAIT = RetryPolicy(attempts_per_model=1, base_delay_s=0.0, max_delay_s=0.0, total_wait_s=1.0)


def model(model_id: int, provider: str, kind: str) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        provider_name=provider,
        provider_kind=kind,
        name=f"{provider}-model",
        locality="cloud",
        tier="standard",
        input_price_per_mtok_usd=Decimal("1"),
        output_price_per_mtok_usd=Decimal("2"),
        cached_input_price_per_mtok_usd=None,
        context_window=8192,
        max_output_tokens=1024,
        accepts_tools=True,
        accepts_json_output=True,
    )


async def walk(
    upstream: UpstreamServer, chain: tuple[ModelSpec, ...], chat: ChatRequest, *, buffered: bool
) -> tuple[list[Started | Delta | Fallback], ChainOutcome]:
    outcome = ChainOutcome()

    def runtime_for(spec: ModelSpec) -> ModelRuntime:
        base = f"{upstream.url}/{spec.provider_name}"
        if spec.provider_kind.startswith("openai"):
            base += "/v1"
        return ModelRuntime(adapter=adapter_for(spec.provider_kind), endpoint=Endpoint(base))

    def started(spec: ModelSpec) -> Started:
        return Started(uuid.UUID(int=1), spec.id, spec.ref, spec.provider_name, "cloud", "", "", {})

    context = ChainContext(
        chat_request_for=lambda spec: replace(chat, model=spec.name),
        runtime_for=runtime_for,
        started_event=started,
    )
    events = [
        event
        async for event in execute_chain(
            context,
            chain=chain,
            outcome=outcome,
            retry=NO_WAIT,
            rng=random.Random(7),
            buffered=buffered,
        )
    ]
    return events, outcome


CALLS = (
    ToolCall(id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather", arguments='{"city":"Paris"}'),
    ToolCall(id="call_Q8hWQ3uCg2sZmdlp1mS1HRc2", name="get_time", arguments='{"zone":"CET"}'),
)
WITH_TOOLS = ChatRequest(
    model="",
    messages=(Message("user", "Weather and time in Paris?"),),
    tools=(Tool(name="get_weather"), Tool(name="get_time")),
)


@pytest.mark.parametrize("buffered", [False, True])
async def test_streamed_tool_calls_reach_the_events_and_the_outcome(
    upstream: UpstreamServer, buffered: bool
) -> None:
    upstream.reply(
        "POST",
        "/alpha/v1/chat/completions",
        Reply.sse(fixture("openai/chat_stream_tool_calls.sse")),
    )

    events, outcome = await walk(
        upstream, (model(1, "alpha", "openai_compatible"),), WITH_TOOLS, buffered=buffered
    )

    deltas = [e for e in events if isinstance(e, Delta)]
    pieces = [p for d in deltas for p in d.tool_calls]
    assert pieces[0] == ToolCallDelta(
        index=0, id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather"
    )
    assert "".join(p.arguments for p in pieces if p.index == 1) == '{"zone":"CET"}'
    if buffered:
        assert len(deltas) == 1
    assert (outcome.tool_calls, outcome.finish_reason, outcome.text) == (CALLS, "tool_calls", "")
    assert outcome.time_to_first_token_ms is not None
    assert outcome.succeeded


async def test_a_model_whose_protocol_cannot_carry_the_request_is_passed_over(
    upstream: UpstreamServer,
) -> None:
    upstream.reply("POST", "/beta/v1/chat/completions", Reply.sse(openai_sse(['{"a":1}'])))
    chat = replace(WITH_TOOLS, tools=(), response_format=ResponseFormat(type="json_object"))

    events, outcome = await walk(
        upstream,
        (model(1, "claude", "anthropic"), model(2, "beta", "openai_compatible")),
        chat,
        buffered=False,
    )

    fallbacks = [e for e in events if isinstance(e, Fallback)]
    assert [(f.from_model, f.to_model, f.error_code) for f in fallbacks] == [
        ("claude:claude-model", "beta:beta-model", "JSON_OUTPUT_NOT_SUPPORTED")
    ]
    assert outcome.text == '{"a":1}'
    assert [r.path for r in upstream.requests] == ["/beta/v1/chat/completions"]
    assert upstream.requests[0].json()["response_format"] == {"type": "json_object"}
    assert outcome.log[0].outcome == "JSON_OUTPUT_NOT_SUPPORTED"
