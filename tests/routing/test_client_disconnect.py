"""A client that hangs up, at any moment and on any door, leaves exactly one `cancelled` log row
and no budget hold behind, and the budget's spend is what the rows say the requests cost.

Against the web process as deployed (`live_server_url`), with a raw socket that sends the
request and closes at the chosen moment: while the first model's budget hold is being taken,
while the upstream has not answered, after part of the answer, and while a fallback model's
hold is being taken."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from analytics.models import RequestLog
from analytics.pricing import Prices, cost_usd, usage_estimate
from routing.budgets.close import budget_release
from routing.budgets.reserve import budget_reserve
from routing.models import Budget, BudgetPeriod, BudgetReservation
from tests.providers.upstream_server import Reply, UpstreamServer
from tests.routing.gateway_support import chat_path, gateway_registry, new_key
from tests.routing.streams import openai_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

V1 = "/v1/chat/completions"
NATIVE = "/api/execute"
# The doors, as (path, streamed).
DOORS = [(V1, False), (V1, True), (NATIVE, False)]
DOOR_IDS = ["v1", "v1-stream", "api"]
ANSWER = openai_sse(["Hel", "lo", " there"], usage=(9, 3))


def body_for(
    path: str, streamed: bool, text: str = "Say hello", session: str = ""
) -> dict[str, Any]:
    """The request on `path`; `session` names it on its log row."""
    if path == NATIVE:
        return {"prompt": text, "max_tokens": 100, "session_id": session}
    messages = [{"role": "user", "content": text}]
    return {
        "model": "auto",
        "messages": messages,
        "max_tokens": 100,
        "stream": streamed,
        "user": session,
    }


def raw_post(url: str, path: str, body: dict[str, Any], key: str) -> socket.socket:
    """The request sent on a socket of its own, which the caller closes when it likes."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=15)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        piece = sock.recv(65536)
        assert piece, f"the server closed before sending {marker!r}: {received!r}"
        received += piece
    return received


def read_all(sock: socket.socket) -> bytes:
    """The whole answer: up to the end of its body, or until the server closes."""
    received = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return received
        received += piece
        if received.endswith((b"data: [DONE]\n\n", b"0\r\n\r\n")) or _complete(received):
            return received


def _complete(received: bytes) -> bool:
    head, sep, rest = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value)
    return False


def eventually(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def waiting_on_locks() -> int:
    """Sessions of this database waiting for a lock (the server's hold, on a locked period)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


@contextlib.contextmanager
def locked(statement: str, *params: object) -> Iterator[None]:
    """`statement` (a lock) held by another connection until the block ends."""
    database = settings.DATABASES["default"]
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        dbname=connection.settings_dict["NAME"],
    ) as locker:
        locker.execute(statement, params)
        try:
            yield
        finally:
            locker.rollback()


def period_locked(period_id: int) -> contextlib.AbstractContextManager[None]:
    """The budget period's row locked: a hold on it waits meanwhile."""
    return locked("SELECT id FROM routing_budgetperiod WHERE id = %s FOR UPDATE", period_id)


def budget_with_period(name: str = "all", **scope: Any) -> tuple[Budget, int]:
    """A hard-stop budget of $1 whose current period exists (opened by a hold given back)."""
    budget = Budget.objects.create(name=name, limit_usd=Decimal("1"), **scope)
    opened = budget_reserve(max_cost_usd=Decimal("0.01"), model_id=scope.get("model_id"))
    budget_release(reservation=opened)
    return budget, BudgetPeriod.objects.get(budget=budget).pk


def assert_closed(budgets: list[Budget], rows_expected: int, timeout_s: float = 15) -> list[Any]:
    """Once every request has its row and no hold is left: exactly `rows_expected` rows, and
    each budget's spend is the cost its requests' rows say."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = list(RequestLog.objects.all())
        held = BudgetReservation.objects.filter(state="held").count()
        if (len(rows) >= rows_expected and held == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # a second row, if one were coming, would land by now
    rows = list(RequestLog.objects.all())
    assert len(rows) == rows_expected
    assert BudgetReservation.objects.filter(state="held").count() == 0
    for budget in budgets:
        period = BudgetPeriod.objects.get(budget=budget)
        covered = [
            row for row in rows if budget.scope != "model" or row.model_id == budget.model_id
        ]
        logged = sum((row.cost_usd or Decimal(0) for row in covered), Decimal(0))
        assert (period.spent_usd, period.reserved_usd) == (logged, Decimal(0))
    return rows


@pytest.mark.parametrize(("path", "streamed"), DOORS, ids=DOOR_IDS)
def test_hang_up_while_the_caller_is_being_authenticated(
    live_server_url: str, upstream: UpstreamServer, path: str, streamed: bool
) -> None:
    """Before the door has handed the request over: the hang-up waits for it, so the request
    still ends as its one `cancelled` row."""
    budget, _ = budget_with_period()
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(ANSWER))
    key = new_key()  # never looked up yet: the server reads it from the database

    with locked("LOCK TABLE routing_apikey IN ACCESS EXCLUSIVE MODE"):
        sock = raw_post(live_server_url, path, body_for(path, streamed), key)
        eventually(lambda: waiting_on_locks() == 1)
        sock.close()
        time.sleep(0.3)  # the server sees the hang-up while the key's lookup still waits

    (row,) = assert_closed([budget], 1)
    assert (row.status, row.error_code, row.cost_usd) == ("cancelled", "CANCELLED", None)
    assert row.api_key_id is not None
    assert upstream.requests == []


@pytest.mark.parametrize(("path", "streamed"), DOORS, ids=DOOR_IDS)
def test_hang_up_while_the_budget_hold_is_being_taken(
    live_server_url: str, upstream: UpstreamServer, path: str, streamed: bool
) -> None:
    budget, period_id = budget_with_period()
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(ANSWER))
    key = new_key()

    with period_locked(period_id):
        sock = raw_post(live_server_url, path, body_for(path, streamed), key)
        eventually(lambda: waiting_on_locks() == 1)
        sock.close()
        time.sleep(0.3)  # the server sees the hang-up while its hold still waits

    (row,) = assert_closed([budget], 1)
    assert (row.status, row.error_code, row.cost_usd) == ("cancelled", "CANCELLED", None)
    assert upstream.requests == []


@pytest.mark.parametrize(("path", "streamed"), DOORS, ids=DOOR_IDS)
def test_hang_up_before_the_upstream_answers(
    live_server_url: str, upstream: UpstreamServer, path: str, streamed: bool
) -> None:
    budget, _ = budget_with_period()
    gateway_registry(upstream)
    upstream.reply("POST", chat_path("alpha"), Reply.sse(ANSWER, delay_s=5))
    key = new_key()

    sock = raw_post(live_server_url, path, body_for(path, streamed), key)
    eventually(lambda: len(upstream.requests) == 1)
    sock.close()

    (row,) = assert_closed([budget], 1)
    assert (row.status, row.error_code, row.cost_usd) == ("cancelled", "CANCELLED", None)
    assert (row.model_name, row.output_tokens) == ("alpha-model", 0)


@pytest.mark.parametrize(("path", "streamed"), DOORS, ids=DOOR_IDS)
def test_hang_up_mid_answer_is_charged_for_what_was_received(
    live_server_url: str, upstream: UpstreamServer, path: str, streamed: bool
) -> None:
    budget, _ = budget_with_period()
    gateway_registry(upstream)
    # The role chunk and "Hel", then silence.
    upstream.reply("POST", chat_path("alpha"), Reply.sse(ANSWER, stall_after_chunks=2, stall_s=5))
    key = new_key()

    sock = raw_post(live_server_url, path, body_for(path, streamed), key)
    if streamed:
        read_until(sock, b'"content":"Hel"')
    else:
        eventually(lambda: len(upstream.requests) == 1)
        time.sleep(0.3)  # "Hel" has reached the gateway
    sock.close()

    (row,) = assert_closed([budget], 1)
    assert (row.status, row.error_code, row.cost_state) == ("cancelled", "CANCELLED", "estimated")
    # No usage had arrived: the prompt and "Hel" are counted locally, at alpha's prices.
    counted = usage_estimate(prompt="user: Say hello", completion="Hel")
    assert (row.input_tokens, row.output_tokens) == (counted.input, counted.output)
    assert row.cost_usd == cost_usd(counted, Prices(Decimal("1.25"), Decimal("10")))


@pytest.mark.parametrize(("path", "streamed"), DOORS, ids=DOOR_IDS)
def test_hang_up_while_the_fallback_models_hold_is_being_taken(
    live_server_url: str, upstream: UpstreamServer, path: str, streamed: bool
) -> None:
    # Only the fallback model is budgeted, so only its hold waits on the locked period.
    models = gateway_registry(upstream)
    budget, period_id = budget_with_period("beta only", scope="model", model_id=models["beta"].pk)
    upstream.reply("POST", chat_path("alpha"), Reply.json({"error": {"message": "?"}}, status=404))
    upstream.reply("POST", chat_path("beta"), Reply.sse(ANSWER))
    key = new_key()

    with period_locked(period_id):
        sock = raw_post(live_server_url, path, body_for(path, streamed), key)
        eventually(lambda: waiting_on_locks() == 1)
        sock.close()
        time.sleep(0.3)

    (row,) = assert_closed([budget], 1)
    assert (row.status, row.error_code, row.cost_usd) == ("cancelled", "CANCELLED", None)
    assert [r.path for r in upstream.requests] == [chat_path("alpha")]


def test_thirty_requests_a_third_hanging_up_at_random_moments(
    live_server_url: str, upstream: UpstreamServer
) -> None:
    budget, _ = budget_with_period()
    gateway_registry(upstream)
    # Eight pieces 50 ms apart: every hang-up below comes before the answer is complete.
    slow = openai_sse([f"p{i} " for i in range(8)], usage=(20, 8))
    upstream.reply("POST", chat_path("alpha"), Reply.sse(slow, chunk_delay_s=0.05))
    key = new_key()
    rng = random.Random(11)
    hanging_up = set(rng.sample(range(30), 10))
    # Each request on one of the three doors; a third hang up 40-250 ms after sending (before
    # routing, before the first byte or mid-answer, whichever that turns out to be).
    plans = {
        index: (DOORS[index % 3], rng.uniform(0.04, 0.25) if index in hanging_up else None)
        for index in range(30)
    }

    def one(index: int) -> bytes:
        (path, streamed), hang_up_after_s = plans[index]
        body = body_for(path, streamed, f"request {index}", session=f"r{index}")
        with raw_post(live_server_url, path, body, key) as sock:
            if hang_up_after_s is not None:
                time.sleep(hang_up_after_s)
                return b""
            return read_all(sock)

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(one, range(30)))

    rows = assert_closed([budget], 30, timeout_s=30)
    statuses = {row.session_id: row.status for row in rows}
    assert statuses == {
        f"r{index}": "cancelled" if index in hanging_up else "success" for index in range(30)
    }
    assert [a[:15] for i, a in enumerate(answers) if i not in hanging_up] == [
        b"HTTP/1.1 200 OK"
    ] * 20
    assert sum(row.cost_usd or Decimal(0) for row in rows if row.status == "success") > 0
