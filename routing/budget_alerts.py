"""Budget alerts that reach someone: a signed webhook and an e-mail, sent once per crossing.

Settlement already tells whether it crossed a period's soft alert share (its statement returns
the new spend and whether the period was alerted), and one conditional `UPDATE … WHERE
soft_alerted_at IS NULL` lets exactly one of any number of concurrent settlements record the
alert. That one writes the alert and a delivery row per configured channel in one transaction
and, once committed, hands each delivery to a Celery task; the request path itself never
waits on a webhook or a mail server. Each attempt is recorded on its delivery row.

Header names, the payload and how a receiver verifies the signature: docs/guards.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import smtplib
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from routing.models import BudgetAlert, BudgetAlertDelivery, BudgetPeriod
from routing.models.budget import alert_emails_split

logger = logging.getLogger(__name__)

EVENT = "budget.soft_alert"
HEADER_EVENT = "X-Orchestrator-Event"
HEADER_DELIVERY = "X-Orchestrator-Delivery"
HEADER_TIMESTAMP = "X-Orchestrator-Timestamp"
HEADER_SIGNATURE = "X-Orchestrator-Signature"
SIGNATURE_VERSION = "v1"

# Attempts after the first; with the default base of 10 s they wait about 10 s, 30 s, 90 s,
# 4.5 min and 13.5 min (plus jitter), about 20 minutes in all.
MAX_RETRIES = 5
RETRY_AFTER_MAX_S = 3600
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Longer than an attempt can take (the task's time limit), so a claim is never taken over
# while its attempt is still running.
CLAIM_S = 90
ERROR_MAX_CHARS = 1000

PENDING = BudgetAlertDelivery.State.PENDING
DELIVERED = BudgetAlertDelivery.State.DELIVERED
FAILED = BudgetAlertDelivery.State.FAILED


def budget_alert_open(*, period_id: int, now: datetime) -> BudgetAlert:
    """Record the alert of a period whose settlement has just crossed its soft share (the
    caller won the conditional UPDATE), with one delivery per channel the budget names; the
    deliveries start once this commits."""
    period = (
        BudgetPeriod.objects.select_related("budget")
        .only(
            "budget_id",
            "spent_usd",
            "limit_usd",
            "budget__alert_webhook_url",
            "budget__alert_emails",
        )
        .get(pk=period_id)
    )
    alert = BudgetAlert(
        period_id=period_id,
        budget_id=period.budget_id,
        spent_usd=period.spent_usd,
        limit_usd=period.limit_usd,
        created_at=now,
    )
    budget = period.budget
    targets: list[tuple[str, str]] = []
    if budget.alert_webhook_url:
        targets.append((BudgetAlertDelivery.Channel.WEBHOOK, budget.alert_webhook_url))
    if recipients := alert_emails_split(budget.alert_emails):
        targets.append((BudgetAlertDelivery.Channel.EMAIL, "\n".join(recipients)))
    if not targets:
        alert.save(force_insert=True)
        return alert
    with transaction.atomic():
        alert.save(force_insert=True)
        deliveries = BudgetAlertDelivery.objects.bulk_create(
            [
                BudgetAlertDelivery(alert=alert, channel=channel, target=target, created_at=now)
                for channel, target in targets
            ]
        )
        transaction.on_commit(partial(_deliveries_start, [d.pk for d in deliveries]))
    return alert


def _deliveries_start(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        budget_alert_delivery_start(delivery_id=delivery_id)


def budget_alert_delivery_start(*, delivery_id: int) -> None:
    """Hand a delivery to a Celery worker, or, without a broker (the zero-setup default), to a
    thread of this process. Never raises: a delivery that cannot be queued stays pending with
    the reason recorded, and can be sent again from the admin."""
    from routing.tasks import budget_alert_deliver

    if settings.ORCHESTRATOR_ALERTS_IN_THREAD:
        threading.Thread(
            target=_deliver_in_thread, args=(delivery_id,), name=f"alert-{delivery_id}", daemon=True
        ).start()
        return
    # ORCHESTRATOR_ALERTS_QUEUE sends deliveries to a queue of their own (default: Celery's);
    # a retry goes back to the queue its message came from.
    queue = getattr(settings, "ORCHESTRATOR_ALERTS_QUEUE", None)
    try:
        budget_alert_deliver.apply_async((delivery_id,), **({"queue": queue} if queue else {}))
    except Exception as exc:
        logger.exception("budget alert delivery %s could not be queued", delivery_id)
        BudgetAlertDelivery.objects.filter(pk=delivery_id, state=PENDING).update(
            last_error=_error_text(f"could not be queued: {type(exc).__name__}: {exc}")
        )


def _deliver_in_thread(delivery_id: int) -> None:
    try:
        budget_alert_deliver_inline(delivery_id=delivery_id)
    except Exception:
        logger.exception("budget alert delivery %s failed", delivery_id)
    finally:
        # Connections belong to their thread; this one ends here.
        connections.close_all()


def budget_alert_deliver_inline(*, delivery_id: int) -> str:
    """Every attempt of one delivery, here, waiting out the backoff between them (without a
    worker: a thread of the web process, or Celery's eager mode)."""
    retries = 0
    while True:
        attempt = budget_alert_delivery_attempt(
            delivery_id=delivery_id, final_attempt=retries >= MAX_RETRIES
        )
        if attempt.state != "retry":
            return attempt.state
        time.sleep(retry_delay_s(retries, attempt.retry_after_s))
        retries += 1


def retry_delay_s(retries: int, retry_after_s: float | None = None) -> float:
    """Exponential backoff with jitter after the `retries`-th retry, or longer when the
    receiver asked for longer (429 with `Retry-After`)."""
    base = float(settings.ORCHESTRATOR_ALERT_RETRY_BASE_S)
    delay = base * 3**retries + random.uniform(0, base / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_MAX_S))
    return delay


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt went: `delivered`, `failed`, `retry` (pending, try again), or `skipped`
    (already delivered or failed, or another attempt holds it right now)."""

    state: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Sent:
    ok: bool
    retryable: bool = False
    status_code: int | None = None
    error: str = ""
    retry_after_s: float | None = None


def budget_alert_delivery_attempt(
    *, delivery_id: int, final_attempt: bool, now: datetime | None = None
) -> Attempt:
    """Send a pending delivery once and record how it went. A retryable failure (connection
    error, timeout, 429, 5xx, a mail server that did not answer) leaves it pending unless this
    was the final attempt; any other failure (4xx, refused recipients) fails it at once."""
    now = now or timezone.now()
    claimed = (
        BudgetAlertDelivery.objects.filter(pk=delivery_id, state=PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claimed_until=now + timedelta(seconds=CLAIM_S))
    )
    if not claimed:
        return Attempt("skipped")
    delivery = BudgetAlertDelivery.objects.select_related("alert__budget", "alert__period").get(
        pk=delivery_id
    )
    try:
        if delivery.channel == BudgetAlertDelivery.Channel.WEBHOOK:
            sent = _webhook_send(delivery)
        else:
            sent = _email_send(delivery)
    except Exception as exc:
        logger.exception("budget alert delivery %s raised", delivery_id)
        sent = _Sent(ok=False, error=f"{type(exc).__name__}: {exc}")
    if sent.ok:
        state = DELIVERED
    elif sent.retryable and not final_attempt:
        state = PENDING
    else:
        state = FAILED
    finished = timezone.now()
    BudgetAlertDelivery.objects.filter(pk=delivery_id).update(
        state=state,
        attempts=F("attempts") + 1,
        last_status_code=sent.status_code,
        last_error=_error_text(sent.error),
        last_attempt_at=finished,
        delivered_at=finished if sent.ok else None,
        claimed_until=None,
    )
    if state == PENDING:
        return Attempt("retry", sent.retry_after_s)
    return Attempt(str(state))


def budget_alert_deliveries_resend(*, alert_ids: list[int]) -> int:
    """Send the failed or stuck deliveries of these alerts again (an admin action)."""
    ids = list(
        BudgetAlertDelivery.objects.filter(alert_id__in=alert_ids)
        .exclude(state=DELIVERED)
        .values_list("pk", flat=True)
    )
    BudgetAlertDelivery.objects.filter(pk__in=ids).update(state=PENDING, claimed_until=None)
    transaction.on_commit(partial(_deliveries_start, ids))
    return len(ids)


def alert_payload(delivery: BudgetAlertDelivery) -> dict[str, Any]:
    """The alert as the webhook body and the e-mail describe it; amounts are exact decimals."""
    alert, budget, period = delivery.alert, delivery.alert.budget, delivery.alert.period
    return {
        "event": EVENT,
        "delivery_id": delivery.pk,
        "alert_id": alert.pk,
        "crossed_at": alert.created_at.isoformat(),
        "budget": {
            "id": budget.pk,
            "name": budget.name,
            "scope": budget.scope,
            "period": budget.period,
            "soft_alert_share": f"{budget.soft_alert_share:f}",
            "hard_stop": budget.hard_stop,
        },
        "period": {
            "starts_at": period.starts_at.isoformat(),
            "ends_at": period.ends_at.isoformat(),
        },
        "spent_usd": f"{alert.spent_usd:f}",
        "limit_usd": f"{alert.limit_usd:f}",
    }


def alert_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256, keyed by the budget's secret, of `<timestamp>.<body>`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def _webhook_send(delivery: BudgetAlertDelivery) -> _Sent:
    body = json.dumps(alert_payload(delivery), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "llm-orchestrator-alerts/1",
        HEADER_EVENT: EVENT,
        HEADER_DELIVERY: str(delivery.pk),
        HEADER_TIMESTAMP: timestamp,
    }
    secret = delivery.alert.budget.alert_webhook_secret
    if secret:
        headers[HEADER_SIGNATURE] = alert_signature(secret, timestamp, body)
    try:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT, follow_redirects=False) as client:
            response = client.post(delivery.target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return _Sent(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return _Sent(ok=True, status_code=status)
    text = response.text[:200].strip()
    error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status == 429 or status >= 500:
        return _Sent(
            ok=False,
            retryable=True,
            status_code=status,
            error=error,
            retry_after_s=_retry_after_s(response.headers.get("Retry-After")),
        )
    return _Sent(ok=False, status_code=status, error=error)


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


def _email_send(delivery: BudgetAlertDelivery) -> _Sent:
    payload = alert_payload(delivery)
    budget, spent, limit = payload["budget"], payload["spent_usd"], payload["limit_usd"]
    share_pct = f"{(Decimal(budget['soft_alert_share']) * 100).normalize():f}"
    subject = f"Budget {budget['name']} passed {share_pct}% of its {budget['period']} limit"
    body = "\n".join(
        [
            f"Budget {budget['name']} ({budget['scope']}) has spent {spent} USD "
            f"of its {limit} USD limit this {budget['period']},",
            f"crossing its soft alert share of {share_pct}% at {payload['crossed_at']}.",
            f"Period: {payload['period']['starts_at']} to {payload['period']['ends_at']}.",
            "Hard stop: "
            + (
                "on (requests that could pass the limit are refused)"
                if budget["hard_stop"]
                else "off (spend is only tracked)"
            ),
            "",
            f"Alert {payload['alert_id']}, delivery {payload['delivery_id']}.",
        ]
    )
    message = EmailMessage(subject, body, to=alert_emails_split(delivery.target))
    try:
        message.send()
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        return _Sent(ok=False, error=f"{type(exc).__name__}: {exc}")
    except (smtplib.SMTPException, OSError) as exc:
        return _Sent(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    return _Sent(ok=True)


def _error_text(error: str) -> str:
    return error[:ERROR_MAX_CHARS]
