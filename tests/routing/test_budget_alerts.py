"""Budget alerts that reach someone: a signed webhook and an e-mail, once per crossing, with
retries, each attempt recorded and shown in the admin."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction

from orchestrator_site.celery import app
from routing.budget_alerts import MAX_RETRIES, alert_signature, retry_delay_s
from routing.budgets.close import budget_settle
from routing.budgets.reserve import budget_reserve
from routing.models import Budget, BudgetAlert, BudgetAlertDelivery, BudgetPeriod
from tests.conftest import ROOT, subprocess_env
from tests.routing.alert_receiver import AlertReceiver

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
SECRET = "whsec-test-0123456789"


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    server = AlertReceiver(secret=SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def no_backoff(settings) -> None:
    """Eager retries wait out the backoff in the calling thread; these tests need no wait."""
    settings.ORCHESTRATOR_ALERT_RETRY_BASE_S = 0


def alerting_budget(
    receiver: AlertReceiver | None,
    *,
    name: str = "team",
    limit: str = "10.00",
    emails: str = "",
) -> Budget:
    return Budget.objects.create(
        name=name,
        limit_usd=Decimal(limit),
        soft_alert_share=Decimal("0.8"),
        alert_webhook_url=receiver.url if receiver else "",
        alert_webhook_secret=SECRET if receiver else "",
        alert_emails=emails,
    )


def spend(amount: str, *, now: datetime = NOW) -> None:
    reservation = budget_reserve(max_cost_usd=Decimal(amount), now=now)
    budget_settle(reservation=reservation, actual_cost_usd=Decimal(amount), now=now)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/budget"


def documented_verifier() -> Callable[..., bool]:
    """`alert_verified` from the verification example in docs/guards.md, run as printed."""
    text = (ROOT / "docs" / "guards.md").read_text()
    [source] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "alert_verified" in b]
    scope: dict[str, Any] = {}
    exec(source, scope)
    return cast(Callable[..., bool], scope["alert_verified"])


# --- what is sent ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_crossing_posts_one_signed_webhook_and_mails_the_recipients(
    receiver: AlertReceiver, mailoutbox: list
) -> None:
    budget = alerting_budget(receiver, emails="ops@example.com, finance@example.com")

    spend("7.99")
    assert receiver.received == [] and mailoutbox == []
    spend("0.02")  # 8.01 of 10: crosses 80 %
    spend("0.50")  # past it already: nothing more

    [hook] = receiver.received
    assert hook.signature_ok
    alert = BudgetAlert.objects.get()
    webhook = BudgetAlertDelivery.objects.get(channel="webhook")
    period = BudgetPeriod.objects.get()
    assert hook.headers["Content-Type"] == "application/json"
    assert hook.headers["X-Orchestrator-Event"] == "budget.soft_alert"
    assert hook.headers["X-Orchestrator-Delivery"] == str(webhook.pk)
    assert hook.headers["X-Orchestrator-Signature"] == alert_signature(
        SECRET, hook.headers["X-Orchestrator-Timestamp"], hook.body
    )
    assert hook.json() == {
        "event": "budget.soft_alert",
        "delivery_id": webhook.pk,
        "alert_id": alert.pk,
        "crossed_at": "2026-11-18T15:30:00+00:00",
        "budget": {
            "id": budget.pk,
            "name": "team",
            "scope": "global",
            "period": "month",
            "soft_alert_share": "0.800",
            "hard_stop": True,
        },
        "period": {
            "starts_at": period.starts_at.isoformat(),
            "ends_at": period.ends_at.isoformat(),
        },
        "spent_usd": "8.01000000",
        "limit_usd": "10.00000000",
    }
    # The receiver's check as docs/guards.md prints it passes; a changed byte does not.
    alert_verified = documented_verifier()
    assert alert_verified(SECRET, hook.headers, hook.body)
    assert not alert_verified(SECRET, hook.headers, hook.body.replace(b"8.01", b"0.01"))
    assert not alert_verified("another secret", hook.headers, hook.body)
    [mail] = mailoutbox
    assert mail.to == ["ops@example.com", "finance@example.com"]
    assert mail.subject == "Budget team passed 80% of its month limit"
    assert "has spent 8.01000000 USD of its 10.00000000 USD limit this month" in mail.body
    rows = BudgetAlertDelivery.objects.values_list(
        "channel", "target", "state", "attempts", "last_status_code", "last_error"
    )
    assert sorted(rows) == [
        ("email", "ops@example.com\nfinance@example.com", "delivered", 1, None, ""),
        ("webhook", receiver.url, "delivered", 1, 200, ""),
    ]
    assert BudgetAlertDelivery.objects.filter(delivered_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_a_webhook_without_a_secret_is_sent_unsigned(
    receiver: AlertReceiver, django_capture_on_commit_callbacks
) -> None:
    Budget.objects.create(
        name="plain", limit_usd=Decimal("1"), alert_webhook_url=receiver.url, alert_emails=""
    )
    with django_capture_on_commit_callbacks(execute=True):
        spend("0.90")

    [hook] = receiver.received
    assert "X-Orchestrator-Signature" not in hook.headers
    assert hook.headers["X-Orchestrator-Timestamp"].isdigit()
    assert BudgetAlertDelivery.objects.get().state == "delivered"


@pytest.mark.django_db
def test_nothing_is_sent_before_the_settlement_commits(
    receiver: AlertReceiver, django_capture_on_commit_callbacks
) -> None:
    alerting_budget(receiver)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        spend("9.00")
    assert receiver.received == []
    assert BudgetAlertDelivery.objects.get().state == "pending"
    assert len(callbacks) == 1

    callbacks[0]()  # the commit
    assert len(receiver.received) == 1
    assert BudgetAlertDelivery.objects.get().state == "delivered"


# --- retries --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("no_backoff")
def test_a_5xx_is_retried_until_it_is_delivered(
    receiver: AlertReceiver, django_capture_on_commit_callbacks
) -> None:
    alerting_budget(receiver)
    receiver.answer(500, 503)

    with django_capture_on_commit_callbacks(execute=True):
        spend("9.00")

    assert len(receiver.received) == 3
    assert all(hook.signature_ok for hook in receiver.received)
    # The same delivery each time, so a receiver can tell a retry from a new alert.
    assert len({hook.headers["X-Orchestrator-Delivery"] for hook in receiver.received}) == 1
    assert receiver.received[0].body == receiver.received[2].body
    delivery = BudgetAlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_backoff")
def test_429_is_retried_but_any_other_4xx_fails_at_once(
    receiver: AlertReceiver, django_capture_on_commit_callbacks
) -> None:
    alerting_budget(receiver, name="limited")
    receiver.answer(429, headers={"Retry-After": "0"})
    with django_capture_on_commit_callbacks(execute=True):
        spend("9.00")
    limited = BudgetAlertDelivery.objects.get(alert__budget__name="limited")
    assert (limited.state, limited.attempts, limited.last_status_code) == ("delivered", 2, 200)

    alerting_budget(receiver, name="gone", limit="1.00")
    receiver.answer(410)
    with django_capture_on_commit_callbacks(execute=True):
        spend("0.90", now=NOW.replace(year=2027))  # another period of both budgets
    gone = BudgetAlertDelivery.objects.get(alert__budget__name="gone")
    assert (gone.state, gone.attempts, gone.last_status_code, gone.last_error) == (
        "failed",
        1,
        410,
        "HTTP 410: status 410",
    )
    assert len(receiver.received) == 3  # 429, 200, then the 410, never retried


@pytest.mark.django_db
@pytest.mark.usefixtures("no_backoff")
def test_connection_errors_are_retried_until_the_last_attempt_then_failed(
    django_capture_on_commit_callbacks,
) -> None:
    Budget.objects.create(
        name="unreachable", limit_usd=Decimal("1"), alert_webhook_url=closed_port_url()
    )
    with django_capture_on_commit_callbacks(execute=True):
        spend("0.90")

    delivery = BudgetAlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (
        "failed",
        MAX_RETRIES + 1,
        None,
    )
    assert delivery.last_error.startswith("ConnectError: ")


def test_backoff_grows_threefold_with_jitter_and_honours_retry_after(settings) -> None:
    settings.ORCHESTRATOR_ALERT_RETRY_BASE_S = 10
    for retries, low in enumerate([10, 30, 90, 270, 810]):
        delays = [retry_delay_s(retries) for _ in range(50)]
        assert all(low <= d <= low + 5 for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert 120 <= retry_delay_s(0, retry_after_s=120) <= 120
    assert retry_delay_s(0, retry_after_s=86400) == 3600


@pytest.fixture
def broker_queue(settings) -> Iterator[str]:
    """Deliveries go to the Redis broker, on a queue of this test's own, not run inline."""
    queue = f"test-alerts-{uuid.uuid4().hex}"
    settings.ORCHESTRATOR_ALERTS_QUEUE = queue
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield queue
    app.conf.task_always_eager = eager


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_retries_through_the_broker_with_backoff(
    receiver: AlertReceiver, broker_queue: str
) -> None:
    alerting_budget(receiver)
    receiver.answer(500, 502)

    spend("9.00")  # queues the delivery; nothing is sent in the request
    assert receiver.received == []
    assert BudgetAlertDelivery.objects.get().state == "pending"

    # A real worker that does not run tasks eagerly (the test settings do), so each retry is
    # a message back through Redis with its countdown.
    worker_main = (
        "from orchestrator_site.celery import app; app.conf.task_always_eager = False; "
        f"app.worker_main(['worker', '--pool', 'solo', '-Q', '{broker_queue}', "
        "'--without-heartbeat', '--without-gossip', '--without-mingle', '-l', 'warning'])"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", worker_main],
        cwd=ROOT,
        env=subprocess_env(ORCHESTRATOR_ALERT_RETRY_BASE_S="0.5"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if BudgetAlertDelivery.objects.get().state != "pending":
                break
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    delivery = BudgetAlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    first, second, third = (hook.at for hook in receiver.received)
    # Backoff of 0.5 s then 1.5 s (plus jitter), each counted by the broker.
    assert second - first >= 0.5
    assert third - second >= 1.5
    assert all(hook.signature_ok for hook in receiver.received)


# --- once per crossing, off the request path ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_many_settlements_crossing_together_send_one_alert(
    receiver: AlertReceiver, mailoutbox: list
) -> None:
    budget = alerting_budget(receiver, limit="100.00", emails="ops@example.com")
    spend("79.99")
    workers = 32
    reserved = threading.Barrier(workers)

    def one_request(_: int) -> None:
        try:
            reservation = budget_reserve(max_cost_usd=Decimal("0.50"), now=NOW)
        finally:
            connection.close()  # back to the pool, which holds fewer than 32
        # Every request holds before any settles, then all settle at once: each one's
        # settlement sees the period past 80 % and not yet alerted.
        reserved.wait(timeout=30)
        try:
            budget_settle(reservation=reservation, actual_cost_usd=Decimal("0.50"), now=NOW)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one_request, range(workers)))

    period = BudgetPeriod.objects.get(budget=budget)
    assert period.spent_usd == Decimal("95.99")
    assert BudgetAlert.objects.count() == 1
    assert sorted(BudgetAlertDelivery.objects.values_list("channel", "state", "attempts")) == [
        ("email", "delivered", 1),
        ("webhook", "delivered", 1),
    ]
    assert len(receiver.received) == 1
    assert len(mailoutbox) == 1
    # The database, not this process, keeps it to one: a second alert of the period or a
    # second delivery on a channel is refused.
    alert = BudgetAlert.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetAlert.objects.create(
            period=period, budget=budget, spent_usd=1, limit_usd=1, created_at=NOW
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetAlertDelivery.objects.create(
            alert=alert, channel="webhook", target="http://x", created_at=NOW
        )


@pytest.mark.django_db(transaction=True)
def test_without_a_worker_a_slow_receiver_does_not_hold_up_the_request(
    receiver: AlertReceiver, settings
) -> None:
    settings.ORCHESTRATOR_ALERTS_IN_THREAD = True  # the zero-setup default (no broker)
    alerting_budget(receiver)
    receiver.delay_s = 1.5

    started = time.monotonic()
    spend("9.00")
    settled_s = time.monotonic() - started

    assert settled_s < 1.0
    deadline = time.monotonic() + 10
    while BudgetAlertDelivery.objects.get().state == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert BudgetAlertDelivery.objects.get().state == "delivered"
    assert len(receiver.received) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_request_guarded_in_async_code_sends_the_alert_it_crosses(
    receiver: AlertReceiver, mailoutbox: list
) -> None:
    await sync_to_async(alerting_budget)(receiver, emails="ops@example.com")
    try:
        reservation = await sync_to_async(budget_reserve)(max_cost_usd=Decimal("9.00"))
        await sync_to_async(budget_settle)(reservation=reservation, actual_cost_usd=Decimal("8.50"))
        deliveries = [
            (d.channel, d.state) async for d in BudgetAlertDelivery.objects.order_by("channel")
        ]
    finally:
        await sync_to_async(connections.close_all)()
    assert deliveries == [("email", "delivered"), ("webhook", "delivered")]
    assert len(receiver.received) == 1 and receiver.received[0].signature_ok
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_a_settlement_that_crosses_nothing_costs_what_it_did(
    receiver: AlertReceiver, django_assert_num_queries, django_capture_on_commit_callbacks
) -> None:
    alerting_budget(receiver, emails="ops@example.com")
    spend("1.00")  # warm: the budget and its period are remembered

    reservation = budget_reserve(max_cost_usd=Decimal("1.00"), now=NOW)
    with django_assert_num_queries(1):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("1.00"), now=NOW)
    # The crossing one: the settlement, the conditional UPDATE, the period and budget read
    # together, the alert and its deliveries inserted in a savepoint of the test's transaction.
    reservation = budget_reserve(max_cost_usd=Decimal("6.00"), now=NOW)
    with django_capture_on_commit_callbacks(execute=False), django_assert_num_queries(7):
        budget_settle(reservation=reservation, actual_cost_usd=Decimal("6.00"), now=NOW)
    assert BudgetAlertDelivery.objects.count() == 2


# --- configuration and the admin ------------------------------------------------------------


@pytest.mark.django_db
def test_alert_targets_are_validated() -> None:
    budget = Budget(
        name="checked",
        limit_usd=Decimal("1"),
        alert_webhook_url="ftp://example.com/hook",
        alert_emails="ops@example.com; not-an-address",
    )
    with pytest.raises(ValidationError) as refused:
        budget.full_clean()
    assert set(refused.value.message_dict) == {"alert_webhook_url", "alert_emails"}
    assert refused.value.message_dict["alert_emails"] == [
        "'not-an-address' is not an e-mail address."
    ]


def admin_form(budget: Budget, **changes: str) -> dict[str, str]:
    return {
        "name": budget.name,
        "scope": "global",
        "period": "month",
        "limit_usd": "10",
        "soft_alert_share": "0.8",
        "hard_stop": "on",
        "enabled": "on",
        "alert_webhook_url": "https://hooks.example.com/budget",
        "alert_emails": "ops@example.com",
        "periods-TOTAL_FORMS": "0",
        "periods-INITIAL_FORMS": "0",
        "periods-MIN_NUM_FORMS": "0",
        "periods-MAX_NUM_FORMS": "0",
        **changes,
    }


@pytest.mark.django_db
def test_the_admin_sets_replaces_and_removes_the_secret_but_never_shows_it(admin_client) -> None:
    budget = Budget.objects.create(name="team", limit_usd=Decimal("10"))
    url = f"/admin/routing/budget/{budget.pk}/change/"
    assert "not set" in admin_client.get(url).content.decode()

    assert admin_client.post(url, admin_form(budget, new_webhook_secret=SECRET)).status_code == 302
    budget.refresh_from_db()
    assert budget.alert_webhook_secret == SECRET
    assert budget.alert_webhook_url == "https://hooks.example.com/budget"
    page = admin_client.get(url).content.decode()
    assert SECRET not in page
    assert '<div class="readonly">set</div>' in page

    # Saving without a new secret keeps it; a new one replaces it; removing clears it.
    assert admin_client.post(url, admin_form(budget)).status_code == 302
    budget.refresh_from_db()
    assert budget.alert_webhook_secret == SECRET
    assert (
        admin_client.post(url, admin_form(budget, new_webhook_secret="rotated")).status_code == 302
    )
    budget.refresh_from_db()
    assert budget.alert_webhook_secret == "rotated"
    assert admin_client.post(url, admin_form(budget, remove_webhook_secret="on")).status_code == 302
    budget.refresh_from_db()
    assert budget.alert_webhook_secret == ""


@pytest.mark.django_db
@pytest.mark.usefixtures("no_backoff")
def test_the_admin_shows_each_delivery_beside_its_alert_and_sends_failed_ones_again(
    receiver: AlertReceiver, admin_client, django_capture_on_commit_callbacks
) -> None:
    alerting_budget(receiver)
    receiver.answer(500, 404)
    with django_capture_on_commit_callbacks(execute=True):
        spend("9.00")
    alert = BudgetAlert.objects.get()

    listing = admin_client.get("/admin/routing/budgetalert/").content.decode()
    assert "webhook: failed (2 attempts, last error: HTTP 404: status 404)" in listing
    page = admin_client.get(f"/admin/routing/budgetalert/{alert.pk}/change/").content.decode()
    assert "HTTP 404: status 404" in page
    assert SECRET not in page

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/routing/budgetalert/",
            {"action": "deliveries_resend", "_selected_action": [str(alert.pk)]},
        )
    assert response.status_code == 302
    delivery = BudgetAlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert (
        "webhook: delivered (3 attempts)"
        in admin_client.get("/admin/routing/budgetalert/").content.decode()
    )
