"""Every request example in the documentation (docs/*.md and the README) runs against the live
server, so an example cannot rot; and money in every answer is a plain decimal string.

What counts as a request example, in a fenced block:

- a shell block with `curl`: run as written (parsed, not handed to a shell), with
  `http://127.0.0.1:8000` pointing at the live server, `$ORCH_KEY` an API key, `$STAFF_KEY` one
  whose owner is staff and `$ORCHESTRATOR_METRICS_TOKEN` the scrape token;
- a Python block that builds an `OpenAI(` client: run with that base URL and `"<the key>"` replaced;
- a JSON block under `<!-- request: METHOD /path -->` (sent with an API key) or
  `<!-- request: websocket /path -->` (a frame, sent by a signed-in user; the frames of one page
  go over one socket in order, and `"0b9c…"` stands for the request id of the answer started
  before it).

A JSON block that looks like a request (it has `prompt`, `messages` or `tasks`, or is a
client frame) must carry one of those marks, or `<!-- not-runnable: why -->` for an example
that cannot run here (one that needs a cloud provider's key); today none does.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from websockets.sync.client import connect

from analytics.models import RequestLog
from providers.models import LLMModel, Provider
from routing.engine.taxonomy import TASK_TYPES
from routing.models import RoutingPolicy, RoutingRule
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import baseline_model, new_key, settle_config, wait_rows
from tests.routing.streams import openai_sse

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
DOCS_BASE_URL = "http://127.0.0.1:8000"
REQUEST_ID_PLACEHOLDER = "0b9c…"
# What a client sends on the sockets; a JSON block with one of these types is a request.
CLIENT_FRAME_TYPES = ("chat.request", "chat.cancel", "ping")
REQUEST_KEYS = re.compile(r'"(prompt|messages|tasks)"\s*:')
CLIENT_FRAME = re.compile(r'"type"\s*:\s*"(' + "|".join(map(re.escape, CLIENT_FRAME_TYPES)) + ')"')
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!--\s*(request|not-runnable):\s*(.*?)\s*-->")
PLAIN_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
EXPONENT_DECIMAL = re.compile(r"-?\d+(\.\d+)?[eE][-+]?\d+")
MONEY_KEYS = {"cost", "baseline_cost"}


@dataclass(frozen=True)
class Example:
    document: str  # relative to the repository
    line: int
    kind: str  # curl | python | http | websocket | not-runnable | unmarked
    body: str
    target: str = ""  # "POST /api/execute", "/ws/chat/", or the reason it cannot run

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def _mark_before(text: str, start: int) -> re.Match[str] | None:
    """The mark on the last non-blank line before a fence, if any."""
    lines = [line for line in text[:start].splitlines() if line.strip()]
    return MARK.fullmatch(lines[-1].strip()) if lines else None


def _kind(language: str, body: str, mark: re.Match[str] | None) -> str | None:
    if mark:
        if mark.group(1) == "not-runnable":
            return "not-runnable"
        return "websocket" if mark.group(2).startswith("websocket ") else "http"
    if language in {"sh", "bash", ""} and re.search(r"^\s*curl\s", body, re.M):
        return "curl"
    if language == "python" and "OpenAI(" in body:
        return "python"
    if language == "json" and (REQUEST_KEYS.search(body) or CLIENT_FRAME.search(body)):
        return "unmarked"
    return None


def examples() -> list[Example]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for fence in FENCE.finditer(text):
            language, body = fence.group(1), fence.group(2)
            mark = _mark_before(text, fence.start())
            kind = _kind(language, body, mark)
            if kind is not None:
                found.append(
                    Example(
                        document=str(path.relative_to(ROOT)),
                        line=text[: fence.start()].count("\n") + 1,
                        kind=kind,
                        body=body,
                        target=mark.group(2) if mark else "",
                    )
                )
    return found


def scenarios() -> list[list[Example]]:
    """One scenario per example, except a page's websocket frames: one socket, in order."""
    runs: list[list[Example]] = []
    sockets: dict[tuple[str, str], list[Example]] = {}
    for example in examples():
        if example.kind == "websocket":
            frames = sockets.setdefault((example.document, example.target), [])
            if not frames:
                runs.append(frames)
            frames.append(example)
        elif example.kind in {"curl", "python", "http"}:
            runs.append([example])
    return runs


def test_every_request_example_in_the_docs_runs_or_says_why_not() -> None:
    found = examples()
    by_kind: dict[str, list[str]] = {}
    for example in found:
        by_kind.setdefault(example.kind, []).append(example.where)

    assert by_kind.get("unmarked", []) == []
    assert [e.where for e in found if e.kind == "not-runnable" and not e.target] == []
    assert len(by_kind.get("not-runnable", [])) <= 2  # the exception, not the rule
    assert sorted(by_kind) == ["curl", "http", "python", "websocket"]
    assert len([e for e in found if e.kind != "not-runnable"]) >= 6


# The live-server part.


def money_problems(value: Any, path: str = "") -> list[str]:
    """Where `value` (a decoded JSON answer) holds money that is not a plain decimal string, or
    any number in exponent form."""
    problems = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            money = str(key).endswith("_usd") or key in MONEY_KEYS
            scalar = not isinstance(item, dict | list | type(None))
            if money and scalar and not (isinstance(item, str) and PLAIN_DECIMAL.fullmatch(item)):
                problems.append(f"{where}={item!r}")
            problems.extend(money_problems(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(money_problems(item, f"{path}[{index}]"))
    elif isinstance(value, str) and EXPONENT_DECIMAL.fullmatch(value):
        problems.append(f"{path}={value!r}")
    return problems


@dataclass(frozen=True)
class Live:
    url: str
    key: str
    staff_key: str
    session_cookie: str


@pytest.fixture
def live(live_server_url: str, upstream: UpstreamServer) -> Live:
    """The live server routing every task to a free model on the local upstream (money 0 at 12
    places, the case that showed as "0E-12"), with the premium baseline priced beside it."""
    provider = Provider.objects.create(
        name="free",
        kind="openai_compatible",
        base_url=f"{upstream.url}/free/v1",
        locality="cloud",
    )
    free = LLMModel.objects.create(
        provider=provider,
        name="free-model",
        tier="standard",
        input_price_per_mtok_usd=Decimal(0),
        output_price_per_mtok_usd=Decimal(0),
    )
    baseline_model(upstream, enabled=False)
    policy = RoutingPolicy.objects.create(name="docs-policy", is_default=True)
    for task_type in TASK_TYPES:
        RoutingRule.objects.create(policy=policy, task_type=task_type, primary=free, tiers=[])
    # Slow enough for a `chat.cancel` to find the answer still streaming.
    pieces = ["The", " stack", " trace", " says", " the", " call", " failed", "."]
    upstream.reply(
        "POST",
        "/free/v1/chat/completions",
        Reply.sse(openai_sse(pieces, usage=(12, 8))).but(chunk_delay_s=0.25),
    )
    settle_config()
    key = new_key()
    # One request already logged, so the totals of /metrics and the reports add up a free row.
    warm = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "warm up"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert warm.status_code == 200, warm.text
    wait_rows(1, request_id=warm.headers["x-orchestrator-request-id"])
    user = get_user_model().objects.create_user("docs-reader", password="docs-reader-password")
    get_user_model().objects.create_user("docs-staff", is_staff=True)
    staff_key = new_key(owner_username="docs-staff")
    browser = Client()
    browser.force_login(user)
    cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
    return Live(live_server_url, key, staff_key, cookie)


def _substituted(text: str, live: Live) -> str:
    values = {
        DOCS_BASE_URL: live.url,
        "$ORCH_KEY": live.key,
        "$STAFF_KEY": live.staff_key,
        "<the key>": live.key,
        "$ORCHESTRATOR_METRICS_TOKEN": settings.ORCHESTRATOR_METRICS_TOKEN,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    unknown = re.findall(r"\$\{?[A-Z_]+", text)
    assert unknown == [], f"the example needs {unknown}: give the test a value or mark it"
    return text


def run_curl(example: Example, live: Live) -> httpx.Response:
    words = shlex.split(_substituted(example.body.replace("\\\n", " "), live))
    assert words[0] == "curl", example.where
    method, url, headers, data = "GET", "", {}, None
    options = iter(words[1:])
    for word in options:
        if word in {"-s", "--silent", "-N", "--no-buffer", "-S", "--show-error"}:
            continue
        if word in {"-X", "--request"}:
            method = next(options)
        elif word in {"-H", "--header"}:
            name, _, value = next(options).partition(":")
            headers[name.strip()] = value.strip()
        elif word in {"-d", "--data", "--data-raw"}:
            data = next(options)
            method = "POST" if method == "GET" else method
        elif word.startswith("-"):
            pytest.fail(f"{example.where}: curl option {word} is not understood by this test")
        else:
            url = word
    return httpx.request(method, url, headers=headers, content=data, timeout=60)


def run_http(example: Example, live: Live) -> httpx.Response:
    method, _, path = example.target.partition(" ")
    body = json.loads(example.body)
    headers = {"Authorization": f"Bearer {live.key}"}
    return httpx.request(method, f"{live.url}{path}", json=body, headers=headers, timeout=60)


def check_answer(example: Example, response: httpx.Response) -> None:
    assert response.status_code in {200, 202}, f"{example.where}: {response.text}"
    body = response.json()
    assert "error" not in body, f"{example.where}: {body}"
    assert money_problems(body) == [], example.where


def run_python(example: Example, live: Live) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_substituted(example.body, live), example.where, "exec"), {})
    return printed.getvalue()


def _frames_until(socket: Any, types: set[str], deadline_s: float = 30) -> list[dict[str, Any]]:
    frames = []
    deadline = time.monotonic() + deadline_s
    while True:
        frame = json.loads(socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
        frames.append(frame)
        if frame["type"] in types or frame["type"] == "error":
            return frames


# After each client frame, the frames that show it was taken.
ANSWERED_BY = {"chat.request": {"chat.started"}, "chat.cancel": {"chat.done", "chat.error"}}


def run_websocket(frames: list[Example], live: Live) -> list[dict[str, Any]]:
    url = live.url.replace("http://", "ws://") + frames[0].target.partition(" ")[2]
    received: list[dict[str, Any]] = []
    started = ""
    with connect(
        url,
        origin=live.url,  # type: ignore[arg-type]
        additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={live.session_cookie}"},
    ) as socket:
        for example in frames:
            text = example.body.replace(REQUEST_ID_PLACEHOLDER, started)
            frame = json.loads(text)
            socket.send(json.dumps(frame))
            answered = _frames_until(socket, ANSWERED_BY.get(frame["type"], {frame["type"]}))
            received.extend(answered)
            started = next(
                (f["request_id"] for f in answered if f["type"] == "chat.started"), started
            )
    return received


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.parametrize("scenario", scenarios(), ids=lambda run: run[0].where)
def test_the_example_runs_against_the_live_server(scenario: list[Example], live: Live) -> None:
    example = scenario[0]
    if example.kind == "curl":
        check_answer(example, run_curl(example, live))
    elif example.kind == "http":
        check_answer(example, run_http(example, live))
    elif example.kind == "python":
        printed = run_python(example, live)
        assert printed.startswith("ChatCompletion("), printed
        assert "'cost_usd': '0.000000000000'" in printed
        assert re.search(r"'-?\d+(\.\d+)?E[-+]?\d+'", printed) is None
    else:
        frames = run_websocket(scenario, live)
        types = [frame["type"] for frame in frames]
        assert "error" not in types, frames
        assert types[:2] == ["chat.accepted", "chat.started"]
        terminal = frames[-1]
        assert (terminal["type"], terminal.get("code")) in {
            ("chat.error", "CANCELLED"),
            ("chat.done", None),
        }, terminal
        assert money_problems(frames) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_money_of_a_free_model_is_a_plain_decimal_on_every_door(live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.key}"}
    native = httpx.post(
        f"{live.url}/api/execute",
        json={"prompt": "Say hello", "metadata": {"cache": False}},
        headers=headers,
        timeout=60,
    ).json()
    openai = httpx.post(
        f"{live.url}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Say hi"}]},
        headers=headers,
        timeout=60,
    ).json()
    wait_rows(3, status=RequestLog.Status.SUCCESS)
    metrics = httpx.get(
        f"{live.url}/metrics",
        headers={"Authorization": f"Bearer {settings.ORCHESTRATOR_METRICS_TOKEN}"},
        timeout=30,
    ).json()

    assert native["metrics"]["cost"] == "0.000000000000"
    assert native["metrics"]["baseline_cost"] == "0.000360000000"  # 12 in, 8 out at 10/30
    assert openai["orchestrator"]["cost_usd"] == "0.000000000000"
    assert openai["orchestrator"]["baseline_cost_usd"] == "0.000360000000"
    assert Decimal(metrics["cost"]["total_usd"]) == 0
    assert money_problems([native, openai, metrics]) == []
