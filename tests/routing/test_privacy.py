"""The privacy agent (routing/privacy.py): its detectors on a labelled set, and how a request
kept on local models is routed by the pure engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from routing.engine import decide
from routing.engine.values import PolicySpec, PrivacyRefused, RegistrySnapshot, RouteRequest
from routing.privacy import DETECTORS, PrivacySpec, privacy_errors, privacy_scan
from tests.routing.factories import BIG, GPT4O, MINI, POLICY, REGISTRY, SONNET, TINY, snapshot

LABELLED = Path(__file__).parent / "data" / "privacy_labelled.jsonl"


def labelled() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def test_the_labelled_set_precision_and_recall() -> None:
    """The figures docs/routing.md reports: a prompt counts as flagged when any detector fires."""
    rows = labelled()
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    false_positives = []
    for row in rows:
        found = bool(privacy_scan(str(row["text"])))
        sensitive = bool(row["labels"])
        key = ("t" if found == sensitive else "f") + ("p" if found else "n")
        counts[key] += 1
        if key == "fp":
            false_positives.append(row["id"])
    assert len(rows) == 151
    assert counts == {"tp": 69, "fp": 1, "fn": 0, "tn": 81}
    # The one false positive: an SSH clone address (git@github.com:…) reads as an e-mail.
    assert false_positives == [149]
    precision = counts["tp"] / (counts["tp"] + counts["fp"])
    recall = counts["tp"] / (counts["tp"] + counts["fn"])
    fp_rate = counts["fp"] / (counts["fp"] + counts["tn"])
    assert (round(precision, 3), round(recall, 3), round(fp_rate, 3)) == (0.986, 1.0, 0.012)


def test_each_labelled_kind_is_found_by_its_own_detector() -> None:
    for row in labelled():
        found = set(privacy_scan(str(row["text"])))
        assert set(row["labels"]) <= found, row


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("pay with 4111 1111 1111 1111", ("card",)),
        ("pay with 4111 1111 1111 1112", ()),  # the Luhn check fails
        ("IBAN GB82 WEST 1234 5698 7654 32", ("iban",)),
        ("IBAN GB83 WEST 1234 5698 7654 32", ()),  # the mod-97 checksum fails
        ("call +44 20 7946 0958", ("phone",)),
        ("upgrade 4.2.11 to 5.2.1 on 2024-03-15", ()),
        ("key AKIAIOSFODNN7EXAMPLE", ("secret",)),
        ("-----BEGIN PRIVATE KEY-----\nMIIE", ("private_key",)),
        ("-----BEGIN PUBLIC KEY-----\nMIIB", ()),
        ("write to a.b@example.org", ("email",)),
    ],
)
def test_detectors(text: str, found: tuple[str, ...]) -> None:
    assert privacy_scan(text) == found


def test_only_the_chosen_detectors_run() -> None:
    text = "mail a.b@example.org, card 4111111111111111"
    assert privacy_scan(text) == ("email", "card")
    assert privacy_scan(text, ["card"]) == ("card",)
    assert privacy_scan(text, []) == ()


def test_the_policy_setting() -> None:
    assert PrivacySpec.of({}) == PrivacySpec(enabled=True, detectors=DETECTORS)
    assert PrivacySpec.of({"privacy": {"enabled": False}}).enabled is False
    assert PrivacySpec.of({"privacy": {"detectors": ["email"]}}).detectors == ("email",)
    assert privacy_errors({"detectors": ["email", "ssn"], "on": 1}) == [
        "unknown key 'on'; expected enabled or detectors",
        "unknown detector 'ssn'; expected one of secret, private_key, email, phone, card, iban",
    ]


def request(**kw: object) -> RouteRequest:
    options: dict[str, object] = {"task_type": "general", "complexity": "complex"}
    options.update(kw)
    return RouteRequest(prompt_tokens=100, **options)  # type: ignore[arg-type]


def test_a_triggered_request_is_routed_to_local_models_only_and_the_trace_says_why() -> None:
    plain = decide(request(), POLICY, snapshot(), REGISTRY)
    assert plain.chain[0].ref == "openai:gpt-4o"
    assert "privacy" not in plain.trace

    kept = decide(request(privacy_triggered=("email", "card")), POLICY, snapshot(), REGISTRY)

    assert [m.ref for m in kept.chain] == ["local:big", "local:tiny"]
    assert kept.trace["privacy"] == {
        "triggered": ["email", "card"],
        "local_only": [],
        "action": "local_only",
    }
    refused = {c["model"]: c["reason"] for c in kept.trace["candidates"] if not c["kept"]}
    assert refused["openai:gpt-4o"] == "privacy: local models only"


def test_a_local_only_key_or_request_keeps_it_local_without_a_detection() -> None:
    kept = decide(request(local_only=("api_key", "request")), POLICY, snapshot(), REGISTRY)
    assert all(m.is_local for m in kept.chain) and kept.chain
    assert kept.trace["privacy"]["local_only"] == ["api_key", "request"]


def test_without_a_local_model_a_private_request_is_refused() -> None:
    cloud = RegistrySnapshot.build((MINI, GPT4O, SONNET))
    policy = PolicySpec(name="cloud", tier_ladder=POLICY.tier_ladder)

    with pytest.raises(PrivacyRefused) as refused:
        decide(request(privacy_triggered=("secret",)), policy, snapshot(), cloud)

    assert refused.value.code == "PRIVACY_NO_LOCAL_MODEL"
    assert refused.value.triggered == ("secret",)
    assert "the privacy agent found secret" in str(refused.value)
    assert refused.value.decision.trace["outcome"] == "privacy: no local model"
    assert refused.value.decision.chain == ()


def test_a_named_cloud_model_is_refused_and_a_named_local_one_answers() -> None:
    with pytest.raises(PrivacyRefused, match="openai:gpt-4o is a cloud model"):
        decide(
            request(override="openai:gpt-4o", local_only=("request",)), POLICY, snapshot(), REGISTRY
        )
    named = decide(
        request(override="local:big", local_only=("request",)), POLICY, snapshot(), REGISTRY
    )
    assert [m.ref for m in named.chain] == ["local:big"]


def test_a_requested_chain_keeps_its_local_models() -> None:
    chain = ("openai:mini", "local:tiny", "openai:gpt-4o")
    kept = decide(
        request(fallback_chain=chain, privacy_triggered=("phone",)), POLICY, snapshot(), REGISTRY
    )
    assert [m.ref for m in kept.chain] == ["local:tiny"]
    with pytest.raises(PrivacyRefused, match="names no local model"):
        decide(
            request(fallback_chain=("openai:mini",), privacy_triggered=("phone",)),
            POLICY,
            snapshot(),
            REGISTRY,
        )


def test_a_sticky_cloud_model_is_left_for_a_local_one() -> None:
    kept = decide(
        request(sticky_model_id=GPT4O.id, privacy_triggered=("email",)),
        replace(POLICY, sticky_sessions=True),
        snapshot(),
        REGISTRY,
    )
    assert kept.chain[0].ref in (BIG.ref, TINY.ref)
    assert kept.trace["sticky"]["kept"] is False
