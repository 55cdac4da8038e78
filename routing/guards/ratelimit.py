"""Per API key rate limits: requests per minute and tokens per minute, each with a burst.

Each limit is a token bucket holding up to `burst` units and refilling at `per_minute` units a
minute, so a key gets `per_minute` sustained and at most `per_minute + burst` in any minute. A
request takes 1 from the request bucket and its estimated tokens from the token bucket, both or
neither, in one atomic step: a Lua script on Redis, a lock on the local-memory cache.

Arithmetic is exact: levels are integers scaled by the microseconds in a minute, so refilling
`elapsed_us * per_minute` scaled units is exactly `elapsed_us / 1 min * per_minute` units, and a
request is allowed exactly when the bucket holds enough, never a microsecond early.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import BaseCache, cache

from core.redis import redis_client, script, scripts_run
from routing.guards import conf

US_PER_MINUTE = 60_000_000


@dataclass(frozen=True, slots=True)
class TokenDebit:
    """A correction of one key's token bucket once a request's real usage is known."""

    key_id: int
    tokens: Limit
    amount: int


@dataclass(frozen=True)
class Limit:
    per_minute: int
    burst: int

    @classmethod
    def of(cls, per_minute: int, burst: int | None = None) -> Limit:
        """`burst` defaults to `per_minute` * the RATE_LIMIT_BURST_SHARE setting (at least 1)."""
        if burst is None:
            burst = max(1, math.ceil(per_minute * conf.rate_limit_burst_share()))
        if per_minute < 1 or burst < 1:
            raise ValueError("a rate limit needs per_minute >= 1 and burst >= 1")
        return cls(per_minute, burst)


@dataclass(frozen=True)
class BucketState:
    allowed: bool
    remaining: int
    reset_us: int
    """Until the bucket is full again."""
    retry_after_us: int
    """Until this request would fit; 0 when it fits now."""


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    requests: BucketState | None
    tokens: BucketState | None
    requests_limit: int | None
    tokens_limit: int | None

    @property
    def retry_after_s(self) -> int:
        """Whole seconds to wait, rounded up, as `Retry-After` wants them; 0 when allowed."""
        waits = [b.retry_after_us for b in (self.requests, self.tokens) if b is not None]
        return -(-max(waits, default=0) // 1_000_000)

    def headers(self) -> dict[str, str]:
        """`Retry-After` when refused, and remaining / reset per bucket (reset in seconds)."""
        headers: dict[str, str] = {}
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.retry_after_s))
        for name, bucket, limit in (
            ("Requests", self.requests, self.requests_limit),
            ("Tokens", self.tokens, self.tokens_limit),
        ):
            if bucket is None or limit is None:
                continue
            headers[f"X-RateLimit-Limit-{name}"] = str(limit)
            headers[f"X-RateLimit-Remaining-{name}"] = str(bucket.remaining)
            headers[f"X-RateLimit-Reset-{name}"] = f"{bucket.reset_us / 1_000_000:.3f}"
        return headers


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def bucket_refill(
    level: int | None, last_us: int | None, now_us: int, limit: Limit
) -> tuple[int, int]:
    """The bucket's scaled level at `now_us`. Pure; the Lua script below mirrors it."""
    full = limit.burst * US_PER_MINUTE
    if level is None or last_us is None:
        return full, now_us
    elapsed = max(0, now_us - last_us)
    deficit = full - level
    if deficit <= 0:
        return full, now_us
    if elapsed >= ceil_div(deficit, limit.per_minute):
        return full, now_us
    return level + elapsed * limit.per_minute, now_us


def bucket_state(level: int, cost: int, limit: Limit, allowed: bool) -> BucketState:
    """What a caller sees of a bucket after the step; `level` is after taking when allowed."""
    full = limit.burst * US_PER_MINUTE
    need = min(cost, limit.burst) * US_PER_MINUTE
    return BucketState(
        allowed=allowed,
        remaining=max(0, level // US_PER_MINUTE),
        reset_us=ceil_div(max(0, full - level), limit.per_minute),
        retry_after_us=0 if allowed else ceil_div(max(0, need - level), limit.per_minute),
    )


# KEYS: request bucket, token bucket. ARGV: now_us (-1: the Redis server's clock), then per
# bucket per_minute, burst, cost (per_minute 0: no such limit), then mode (1 take, 0 debit).
# Returns per bucket: level after the step, and 1/0 for allowed.
RATE_LIMIT_LUA = """
local function ceil_div(a, b)
  local q = math.floor(a / b)
  while q * b < a do q = q + 1 end
  while (q - 1) * b >= a do q = q - 1 end
  return q
end
local S = 60000000
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local mode = tonumber(ARGV[8])
local levels = {}
local ok = 1
for i = 1, 2 do
  local per_minute = tonumber(ARGV[i * 3 - 1])
  local burst = tonumber(ARGV[i * 3])
  local cost = tonumber(ARGV[i * 3 + 1])
  if per_minute > 0 then
    local full = burst * S
    local stored = redis.call('HMGET', KEYS[i], 'l', 't')
    local level = full
    if stored[1] then
      level = tonumber(stored[1])
      local elapsed = now - tonumber(stored[2])
      if elapsed < 0 then elapsed = 0 end
      local deficit = full - level
      if deficit <= 0 or elapsed >= ceil_div(deficit, per_minute) then
        level = full
      else
        level = level + elapsed * per_minute
      end
    end
    if mode == 1 and level < math.min(cost, burst) * S then ok = 0 end
    levels[i] = {level, cost * S, full, per_minute}
  end
end
local out = {now}
for i = 1, 2 do
  local b = levels[i]
  if b then
    local level = b[1]
    if ok == 1 then
      level = math.min(level - b[2], b[3])
      local ttl_ms = math.floor(ceil_div(math.max(0, b[3] - level), b[4]) / 1000) + 1000
      local level_text = string.format('%.0f', level)
      redis.call('HSET', KEYS[i], 'l', level_text, 't', string.format('%.0f', now))
      redis.call('PEXPIRE', KEYS[i], ttl_ms)
    end
    table.insert(out, string.format('%.0f', level))
  else
    table.insert(out, '')
  end
end
table.insert(out, ok)
return out
"""

_local_lock = threading.Lock()


def _bucket_keys(key_id: int) -> tuple[str, str]:
    return f"ratelimit:{key_id}:requests", f"ratelimit:{key_id}:tokens"


class RateLimiter:
    def __init__(
        self, store: BaseCache | None = None, clock_us: Callable[[], int] | None = None
    ) -> None:
        """`clock_us=None` takes the time from Redis itself, one clock for every process."""
        self.store = store if store is not None else cache
        self.clock_us = clock_us

    def check(
        self,
        *,
        key_id: int,
        requests: Limit | None,
        tokens: Limit | None,
        token_cost: int = 0,
    ) -> RateLimitResult:
        """Take one request and `token_cost` tokens if both buckets hold enough, else nothing.

        A request costing more tokens than the burst passes only on a full bucket, which it
        leaves owing: the key then waits until the debt is refilled.
        """
        levels, allowed = self._step(key_id, requests, tokens, token_cost, take=True)
        return self.result(levels, allowed, requests=requests, tokens=tokens, cost=token_cost)

    @staticmethod
    def result(
        levels: list[int], allowed: bool, *, requests: Limit | None, tokens: Limit | None, cost: int
    ) -> RateLimitResult:
        return RateLimitResult(
            allowed=allowed,
            requests=None if requests is None else bucket_state(levels[0], 1, requests, allowed),
            tokens=None if tokens is None else bucket_state(levels[1], cost, tokens, allowed),
            requests_limit=requests.per_minute if requests else None,
            tokens_limit=tokens.per_minute if tokens else None,
        )

    def debit_tokens(self, *, key_id: int, tokens: Limit, amount: int) -> None:
        """Correct the token bucket once the real usage is known (negative gives back)."""
        self._step(key_id, None, tokens, amount, take=False)

    def debit_many(self, debits: Sequence[TokenDebit]) -> None:
        """`debit_tokens` for many requests, in one Redis round trip."""
        client = redis_client(self.store)
        if client is None:
            for debit in debits:
                self.debit_tokens(key_id=debit.key_id, tokens=debit.tokens, amount=debit.amount)
            return
        calls = [
            self.script_call(debit.key_id, None, debit.tokens, debit.amount, take=False)
            for debit in debits
            if debit.amount
        ]
        if calls:
            scripts_run(client, RATE_LIMIT_LUA, calls)

    def script_call(
        self, key_id: int, requests: Limit | None, tokens: Limit | None, cost: int, take: bool
    ) -> tuple[list[str], list[int]]:
        """The Lua script's KEYS and ARGV for one step, for callers that pipeline it."""
        keys = [self.store.make_key(k) for k in _bucket_keys(key_id)]
        now = self.clock_us() if self.clock_us else None
        args: list[int] = [-1 if now is None else now]
        for limit, units in ((requests, 1), (tokens, cost)):
            args += [limit.per_minute, limit.burst, units] if limit else [0, 0, 0]
        args.append(1 if take else 0)
        return keys, args

    @staticmethod
    def script_reply(reply: list[Any]) -> tuple[list[int], bool]:
        levels = [int(v) if v not in (b"", "") else 0 for v in reply[1:3]]
        return levels, int(reply[3]) == 1

    def _step(
        self, key_id: int, requests: Limit | None, tokens: Limit | None, cost: int, take: bool
    ) -> tuple[list[int], bool]:
        client = redis_client(self.store)
        if client is None:
            now = self.clock_us() if self.clock_us else None
            return self._local_step(list(_bucket_keys(key_id)), requests, tokens, cost, take, now)
        keys, args = self.script_call(key_id, requests, tokens, cost, take)
        run = script(client, RATE_LIMIT_LUA)
        return self.script_reply(run(keys=keys, args=args, client=client))

    def _local_step(
        self,
        keys: list[str],
        requests: Limit | None,
        tokens: Limit | None,
        cost: int,
        take: bool,
        now: int | None,
    ) -> tuple[list[int], bool]:
        now_us = now if now is not None else time.time_ns() // 1000
        with _local_lock:
            buckets: list[tuple[str, Limit, int, int] | None] = []
            ok = True
            for key, limit, units in zip(keys, (requests, tokens), (1, cost), strict=True):
                if limit is None:
                    buckets.append(None)
                    continue
                stored_level, stored_us = self.store.get(key) or (None, None)
                level, _ = bucket_refill(stored_level, stored_us, now_us, limit)
                if take and level < min(units, limit.burst) * US_PER_MINUTE:
                    ok = False
                buckets.append((key, limit, level, units))
            levels = [0, 0]
            for index, bucket in enumerate(buckets):
                if bucket is None:
                    continue
                key, limit, level, units = bucket
                if ok:
                    level = min(level - units * US_PER_MINUTE, limit.burst * US_PER_MINUTE)
                    ttl_us = ceil_div(limit.burst * US_PER_MINUTE - level, limit.per_minute)
                    self.store.set(key, (level, now_us), timeout=ttl_us // 1_000_000 + 1)
                levels[index] = level
            return levels, ok
