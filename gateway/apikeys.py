"""API keys: create (the plaintext is returned once), revoke, and authenticate on the hot path.

`apikey_authenticate` answers from the Django cache (Redis in production) when warm, so a
request spends no database query on its key; revoking or editing a key drops its cache entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from core.dependencies import REDIS_AWAY
from core.threads import in_thread
from routing.models import ApiKey
from routing.pipeline.events import Caller

KEY_PREFIX = "orch-"
DISPLAY_PREFIX_LENGTH = 12
CACHE_TTL_S = 60
# A wrong key is remembered briefly too, so a client retrying a bad key cannot hammer the DB.
MISS_CACHE_TTL_S = 10
LAST_USED_EVERY_S = 60
# How long a process trusts what it last read from the shared cache about a key: a revocation
# or an edit reaches every other process within this time (the process that made it at
# once), as a routing-configuration edit does (routing.config.cache.SHARED_TTL_S), and a
# busy key costs one shared-cache read per second instead of one per request.
LOCAL_TTL_S = 1.0
LOCAL_MAX_KEYS = 10_000
_MISS = "-"
# key hash -> (the caller or _MISS, monotonic time it was read)
_local: dict[str, tuple[Caller | str, float]] = {}
_last_used_marks: dict[int, float] = {}
_background: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    plaintext: str


class ApiKeyNotFound(LookupError):
    pass


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _cache_key(digest: str) -> str:
    return f"apikey:{digest}"


def apikey_create(
    *,
    name: str,
    owner_username: str | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    local_only: bool = False,
) -> CreatedKey:
    """Create a key; the plaintext exists only in the returned value."""
    owner = None
    if owner_username:
        owner = get_user_model().objects.get(username=owner_username)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name,
        prefix=plaintext[:DISPLAY_PREFIX_LENGTH],
        key_hash=key_hash(plaintext),
        owner=owner,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        local_only=local_only,
    )
    return CreatedKey(api_key=api_key, plaintext=plaintext)


def apikey_find(*, ref: str) -> ApiKey:
    """A key by its id or by its display prefix (which must then match exactly one key)."""
    if ref.isdigit():
        found = ApiKey.objects.filter(pk=int(ref))
    else:
        found = ApiKey.objects.filter(prefix__startswith=ref)
    keys = list(found[:2])
    if len(keys) != 1:
        raise ApiKeyNotFound(
            f"no API key matches {ref!r}" if not keys else f"{ref!r} matches several keys"
        )
    return keys[0]


def apikey_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke for good; the cached entry is dropped once the revocation is committed."""
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), enabled=False
        )
        transaction.on_commit(lambda: apikey_forget(api_key=api_key))
    api_key.refresh_from_db()
    return api_key


def apikeys_forget_local() -> None:
    """Forget what this process remembers of every key (tests; a cleared shared cache)."""
    _local.clear()


def apikey_forget(*, api_key: ApiKey) -> None:
    """Drop the cached authentication of a key whose row changed."""
    _local.pop(api_key.key_hash, None)
    cache.delete(_cache_key(api_key.key_hash))


def _caller_of(api_key: ApiKey) -> Caller:
    owner = api_key.owner
    return Caller(
        user_id=api_key.owner_id,
        api_key_id=api_key.pk,
        rpm_limit=api_key.rpm_limit,
        tpm_limit=api_key.tpm_limit,
        is_staff=bool(owner and owner.is_staff),
        local_only=api_key.local_only,
    )


def _caller_from_db(digest: str) -> Caller | None:
    try:
        api_key = (
            ApiKey.objects.select_related("owner")
            .filter(key_hash=digest, enabled=True, revoked_at__isnull=True)
            .first()
        )
    finally:
        # Hand the pooled connection back now: a streamed answer can last minutes, and a
        # connection held for all of it per request would drain the pool under load.
        connection.close()
    return _caller_of(api_key) if api_key else None


async def apikey_authenticate(raw: str) -> Caller | None:
    """The caller a raw key stands for, or None for a wrong, disabled or revoked key."""
    if not raw.startswith(KEY_PREFIX):
        return None
    digest = key_hash(raw)
    now = time.monotonic()
    local = _local.get(digest)
    if local is not None and now - local[1] < LOCAL_TTL_S:
        entry = local[0]
    else:
        try:
            entry = await cache.aget(_cache_key(digest))
        except REDIS_AWAY:
            entry = None  # fails open to the database (docs/guards.md)
        if entry != _MISS and not isinstance(entry, Caller):
            entry = await in_thread(_caller_from_db)(digest) or _MISS
            with contextlib.suppress(*REDIS_AWAY):
                await cache.aset(
                    _cache_key(digest),
                    entry,
                    MISS_CACHE_TTL_S if entry == _MISS else CACHE_TTL_S,
                )
        if len(_local) >= LOCAL_MAX_KEYS:
            _local.clear()  # a flood of wrong keys must not grow this without bound
        _local[digest] = (entry, now)
    caller = entry if isinstance(entry, Caller) else None
    if caller is not None and caller.api_key_id is not None:
        _touch(caller.api_key_id)
    return caller


def _touch(api_key_id: int) -> None:
    """Record `last_used_at` at most once a minute per key and process, off the request path."""
    now = time.monotonic()
    if now - _last_used_marks.get(api_key_id, -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
        return
    _last_used_marks[api_key_id] = now
    task = asyncio.get_running_loop().create_task(_mark_used(api_key_id))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _mark_used(api_key_id: int) -> None:
    await in_thread(_mark_used_blocking)(api_key_id)


def _mark_used_blocking(api_key_id: int) -> None:
    # Runs outside the request's lifetime, so the pooled connection is handed back here.
    try:
        ApiKey.objects.filter(pk=api_key_id).update(last_used_at=timezone.now())
    finally:
        connection.close()


def apikey_ids_of_user(user_id: int) -> tuple[int, ...]:
    """Ids of every key `user_id` owns, revoked ones too: their past usage is still theirs."""
    return tuple(ApiKey.objects.filter(owner_id=user_id).values_list("id", flat=True))
