"""Thumbs recorded in the chat as the learned router's training examples, and `manage.py router
train --with-feedback` from the data and those thumbs to an active, kept, reproducible version."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from analytics.models import RequestFeedback, RequestLog, RequestPayload
from providers.models import LLMModel, Provider
from routing.router import store
from routing.router.feedback import FeedbackExamples, feedback_examples
from routing.router.train import Example

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 10, 9, tzinfo=UTC)


def _registry() -> dict[str, LLMModel]:
    cloud = Provider.objects.create(
        name="openai", kind="openai", base_url="https://x.test/v1", locality="cloud"
    )
    home = Provider.objects.create(
        name="home", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", locality="local"
    )
    prices = {"input_price_per_mtok_usd": Decimal(1), "output_price_per_mtok_usd": Decimal(2)}
    return {
        "premium": LLMModel.objects.create(provider=cloud, name="big", tier="premium", **prices),
        "standard": LLMModel.objects.create(provider=cloud, name="mini", tier="standard", **prices),
        "small_local": LLMModel.objects.create(
            provider=home, name="smol", tier="small_local", **prices
        ),
    }


def _rid(n: int) -> uuid.UUID:
    # Fixed ids: examples come in request id order.
    return uuid.UUID(int=n)


def _answer(
    n: int,
    model: LLMModel | None,
    *,
    prompt: str | None,
    positive: bool | None,
    is_demo: bool = False,
) -> RequestLog:
    log = RequestLog.objects.create(
        request_id=_rid(n),
        created_at=AT,
        entry_point="chat",
        status="success",
        cost_state="reported",
        model=model,
        model_name=model.name if model else "gone",
        is_demo=is_demo,
    )
    if prompt is not None:
        RequestPayload.objects.create(request=log, prompt=prompt, response="an answer")
    if positive is not None:
        RequestFeedback.objects.create(request=log, positive=positive)
    return log


def _seed_votes() -> None:
    models = _registry()
    _answer(1, models["standard"], prompt="Prove the lemma step by step", positive=False)
    _answer(2, models["small_local"], prompt="Say hello in French", positive=True)
    _answer(3, models["premium"], prompt="Write a sonnet about rain", positive=True)
    _answer(4, models["standard"], prompt=None, positive=False)
    _answer(5, models["small_local"], prompt="", positive=True)
    _answer(6, None, prompt="Which model answered me?", positive=False)
    _answer(7, models["standard"], prompt="A demo question", positive=False, is_demo=True)
    _answer(8, models["standard"], prompt="Nobody voted on this", positive=None)
    _answer(9, models["small_local"], prompt="Sum 2 and 2", positive=False)


def test_feedback_examples_are_the_votes_on_cheap_answers_with_a_kept_prompt() -> None:
    _seed_votes()

    found = feedback_examples(weight=2.5)

    assert found == FeedbackExamples(
        examples=(
            # Thumbs down below premium: the premium model was needed.
            Example(
                id=f"feedback/{_rid(1)}",
                prompt="Prove the lemma step by step",
                source="feedback",
                strong=1.0,
                weak=0.0,
                weight=2.5,
            ),
            # Thumbs up below premium: the cheap model sufficed.
            Example(
                id=f"feedback/{_rid(2)}",
                prompt="Say hello in French",
                source="feedback",
                strong=1.0,
                weak=1.0,
                weight=2.5,
            ),
            Example(
                id=f"feedback/{_rid(9)}",
                prompt="Sum 2 and 2",
                source="feedback",
                strong=1.0,
                weak=0.0,
                weight=2.5,
            ),
        ),
        # 3 (premium) and 6 (its model is gone: counted with premium, as the code stands).
        skipped_premium=2,
        # 4 (no payload) and 5 (an empty prompt); demo row 7 and unvoted 8 are not counted.
        skipped_no_prompt=2,
    )
    assert found.examples[0].premium_better and not found.examples[1].premium_better


def test_no_votes_no_examples() -> None:
    _registry()

    assert feedback_examples(weight=2.0) == FeedbackExamples((), 0, 0)


# -- manage.py router train --with-feedback ------------------------------------------------------

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"


def _dev_row(i: int) -> dict[str, object]:
    if i % 2:
        source = "gsm8k"
        prompt = f"Tom has {i} apples and buys {i + 3} more, then gives away {i // 2}. How many?"
        # The cheap model fails every third word problem; the premium one fails one in seven.
        strong, weak = int(i % 7 != 0), int(i % 3 != 0)
    else:
        source = "mmlu"
        topics = ("photosynthesis", "tariffs", "the French revolution", "enzymes", "prime numbers")
        prompt = (
            f"Which of the following is true about {topics[i % 5]}?\n"
            f"A) option {i}\nB) option {i + 1}\nC) option {i + 2}\nD) none"
        )
        strong, weak = 1, int(i % 4 != 0)
    return {
        "id": f"{source}/{i}",
        "source": source,
        "prompt": prompt,
        "contaminated": False,
        "outcomes": {STRONG: {"score": strong}, WEAK: {"score": weak}},
    }


@pytest.fixture
def dev_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing-dev.jsonl"
    path.write_text("".join(json.dumps(_dev_row(i)) + "\n" for i in range(40)), encoding="utf-8")
    return path


@pytest.fixture
def router_home(settings: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """Versions and the ACTIVE file under tmp_path; nothing pinned."""
    var = tmp_path / "var"
    settings.VAR_DIR = var  # type: ignore[attr-defined]
    settings.ORCHESTRATOR_ROUTER_ARTIFACT = ""  # type: ignore[attr-defined]
    store.router_forget()
    yield var
    store.router_forget()


def _router(*args: str) -> str:
    out = StringIO()
    call_command("router", *args, stdout=out)
    return out.getvalue()


def _train(dev_file: Path) -> str:
    return _router("train", "--data", str(dev_file), "--params", "2,1", "--with-feedback")


def test_train_with_feedback_keeps_activates_rolls_back_and_reproduces(
    dev_file: Path, router_home: Path
) -> None:
    _seed_votes()
    shipped = store.shipped_version()

    output = _train(dev_file)

    versions = sorted((router_home / "router" / "versions").glob("*.json"))
    assert len(versions) == 1
    version = versions[0].stem
    assert version.startswith("r1-") and version != shipped
    assert (
        "feedback: 3 examples (weight 2.0); skipped 2 premium answers and 2 without a kept prompt"
        in output.splitlines()
    )
    assert f"before: active router {shipped}" in output
    assert f"after: new router {version}" in output
    assert f"activated {version} (roll back with: manage.py router rollback)" in output
    assert output.splitlines()[-1] == f"router {version} written to {versions[0]}"
    body = json.loads(versions[0].read_text(encoding="utf-8"))
    assert body["trained_on"]["rows"] == 40
    assert (body["trained_on"]["feedback_examples"], body["trained_on"]["feedback_weight"]) == (
        3,
        2.0,
    )
    assert sorted(body["evaluation"]["out_of_fold"]) == ["gsm8k", "mmlu"]
    assert store.active_router().version == version
    assert _router("versions").splitlines() == [
        f"  {shipped}  shipped  {store.SHIPPED}",
        f"* {version}  trained  {versions[0]}",
    ]

    assert _router("rollback") == f"rolled back; active router: {shipped}\n"
    assert store.active_router().version == shipped
    assert _router("versions").splitlines()[0] == f"* {shipped}  shipped  {store.SHIPPED}"

    first_bytes = versions[0].read_bytes()
    again = _train(dev_file)

    assert again.splitlines()[-1] == f"router {version} written to {versions[0]}"
    assert sorted((router_home / "router" / "versions").glob("*.json")) == versions
    assert versions[0].read_bytes() == first_bytes
    assert store.active_router().version == version


def test_a_vote_changes_the_trained_version(dev_file: Path, router_home: Path) -> None:
    _seed_votes()
    first = _train(dev_file).splitlines()[-1]
    RequestFeedback.objects.filter(request__request_id=_rid(2)).update(positive=False)
    store.router_forget()

    second = _train(dev_file).splitlines()[-1]

    assert first != second
    assert len(list((router_home / "router" / "versions").glob("*.json"))) == 2
