"""How every adapter sends a request (through the one upstream client, `http_client`), and the
one mapping from HTTP failures to typed `ProviderError`s."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, TypeVar

import orjson

from providers.adapters.http_client import (
    ConnectFailed,
    ConnectionCut,
    Headers,
    ProtocolViolation,
    Response,
    Timeouts,
    WireError,
    WireTimeout,
    upstream_pool,
    with_query,
)
from providers.adapters.types import (
    ContextTooLong,
    Endpoint,
    InvalidResponse,
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)

# Used only where an Endpoint gives no value: writes and pool waits are never long.
WRITE_TIMEOUT_S = 10.0
POOL_TIMEOUT_S = 10.0
UPSTREAM_MESSAGE_MAX_CHARS = 500


def timeout_for(endpoint: Endpoint) -> Timeouts:
    return Timeouts(
        connect=endpoint.connect_timeout_s,
        read=endpoint.read_timeout_s,
        write=WRITE_TIMEOUT_S,
        pool=POOL_TIMEOUT_S,
    )


_CONTEXT_TOO_LONG = re.compile(
    r"context[ _](length|window)|maximum context|prompt is too long|too many tokens"
    r"|token limit|exceeds the maximum number of tokens|input is too long",
    re.IGNORECASE,
)


_BAD_KEY = re.compile(r"api key not valid|invalid api key|incorrect api key", re.IGNORECASE)
_RETRY_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def provider_error(
    *,
    status: int | None = None,
    body: bytes | str | Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    exc: BaseException | None = None,
    secret: str | None = None,
) -> ProviderError:
    """Map an upstream failure to its typed error.

    Give `exc` for a transport failure, or `status` (and the upstream `body`, `headers`) for
    an HTTP error answer. With neither, `body` is an error the provider sent inside a stream
    that already started: retryable unless it says the context is too long. `secret` (the
    API key) is blanked out of every message, since some providers echo it back.
    """
    if exc is not None:
        return _from_exception(exc, secret)
    message = _redact(_upstream_message(body) or _status_phrase(status), secret)
    if status is None:
        if _CONTEXT_TOO_LONG.search(message):
            return ContextTooLong(message)
        return ProviderUnavailable(message)
    if status == 429:
        wait_s = retry_after_s(headers or Headers())
        if wait_s is None:
            wait_s = _retry_delay_in_body(body)
        return ProviderRateLimited(message, status=status, retry_after_s=wait_s)
    if status == 408:
        return ProviderTimeout(message, status=status)
    if status >= 500:
        return ProviderUnavailable(
            message, status=status, retry_after_s=retry_after_s(headers or Headers())
        )
    # Gemini answers a wrong key with 400 INVALID_ARGUMENT, not 401.
    if status in (401, 403) or (status == 400 and _BAD_KEY.search(message)):
        return ProviderAuthFailed(message, status=status)
    if status in (400, 413, 422) and _CONTEXT_TOO_LONG.search(message):
        return ContextTooLong(message, status=status)
    if status >= 400:
        return ProviderRejected(message, status=status)
    return InvalidResponse(f"unexpected HTTP status {status}: {message}", status=status)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (`headers` looked up by lower-case name): a number of
    seconds, or an HTTP date measured against the response's own `Date` header (so this
    module reads no clock, and server clock skew cancels out). None when absent or
    unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    sent_at = headers.get("date")
    if sent_at is None:
        return None
    try:
        delta = parsedate_to_datetime(value) - parsedate_to_datetime(sent_at)
    except (TypeError, ValueError):
        return None
    return max(0.0, delta.total_seconds())


def _retry_delay_in_body(body: bytes | str | Mapping[str, Any] | None) -> float | None:
    """Gemini puts the wait in the body, as a google.rpc.RetryInfo `retryDelay` ("17s")."""
    payload: Any = body
    if isinstance(body, bytes | str):
        try:
            payload = json.loads(body)
        except ValueError:
            return None
    error = payload.get("error") if isinstance(payload, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        delay = detail.get("retryDelay") if isinstance(detail, Mapping) else None
        match = _RETRY_DELAY.match(delay) if isinstance(delay, str) else None
        if match:
            return float(match.group(1))
    return None


def _from_exception(exc: BaseException, secret: str | None) -> ProviderError:
    detail = _redact(f"{type(exc).__name__}: {exc}".rstrip(": "), secret)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, WireTimeout | TimeoutError):
        return ProviderTimeout(f"upstream timed out ({detail})")
    if isinstance(exc, ConnectFailed):
        return ProviderUnavailable(f"cannot connect to upstream ({detail})")
    if isinstance(exc, ConnectionCut | ConnectionError):
        return ProviderUnavailable(f"upstream connection cut ({detail})")
    if isinstance(exc, ProtocolViolation):
        return ProviderUnavailable(f"upstream broke the HTTP protocol ({detail})")
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return InvalidResponse(f"upstream sent malformed JSON ({detail})")
    return ProviderUnavailable(f"upstream request failed ({detail})")


def _upstream_message(body: bytes | str | Mapping[str, Any] | None) -> str:
    """The provider's own words from the error shapes the adapters meet: `{"error":
    {"message"}}` (OpenAI, Anthropic, Gemini), `{"error": "..."}` (Ollama), `{"detail"}`
    and `{"message"}` (other servers), or the raw text."""
    if body is None:
        return ""
    payload: Any = body
    if isinstance(body, bytes | str):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            payload = json.loads(text)
        except ValueError:
            return text.strip()[:UPSTREAM_MESSAGE_MAX_CHARS]
    if isinstance(payload, Mapping):
        error = payload.get("error", payload)
        if isinstance(error, str):
            return error[:UPSTREAM_MESSAGE_MAX_CHARS]
        if isinstance(error, Mapping):
            for key in ("message", "detail"):
                if isinstance(error.get(key), str):
                    return str(error[key])[:UPSTREAM_MESSAGE_MAX_CHARS]
            code = error.get("code")
            if isinstance(code, str):
                return code
    return json.dumps(payload)[:UPSTREAM_MESSAGE_MAX_CHARS]


def _status_phrase(status: int | None) -> str:
    if status is None:
        return "upstream reported an error"
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


# Providers that echo a rejected key mask its middle ("sk-proj-*****wxyz", "sk-ab...wxyz").
_MASKED_KEY = re.compile(r"\S*\*{3,}\S*|\w[\w-]*(?:\.\.\.|…)\w+")


def _redact(text: str, secret: str | None) -> str:
    if not secret:
        return text
    return _MASKED_KEY.sub("[redacted]", text.replace(secret, "[redacted]"))


def loads(data: bytes | str) -> Any:
    """Parse one JSON document from upstream; malformed JSON is an `InvalidResponse`.

    orjson, not `json`: a streamed answer is parsed one JSON document per token, and `json`
    took a measurable share of the gateway's CPU for it (docs/benchmarks.md, "The web process
    on uvicorn, and less CPU per request"). Stricter than `json` (no NaN or Infinity
    literals), as the providers' own JSON is."""
    try:
        return orjson.loads(data)
    except ValueError as exc:
        raise InvalidResponse(f"upstream sent malformed JSON: {exc}") from None


def _json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _send(
    endpoint: Endpoint,
    method: str,
    url: str,
    headers: Mapping[str, str],
    json_body: Mapping[str, Any] | None,
    params: Mapping[str, str] | None,
) -> Response:
    """Send one request; an error status raises its typed error (after reading the body,
    whose words it carries), a transport failure too."""
    body = None
    sent_headers = dict(headers)
    if json_body is not None:
        body = _json_bytes(json_body)
        sent_headers.setdefault("content-type", "application/json")
    try:
        response = await upstream_pool().request(
            method,
            with_query(url, params),
            headers=sent_headers,
            body=body,
            timeouts=timeout_for(endpoint),
        )
    except WireError as exc:
        raise provider_error(exc=exc, secret=endpoint.api_key) from None
    if response.status_code >= 400:
        try:
            error_body = await response.aread()
        except WireError:
            error_body = b""
        finally:
            await response.aclose()
        raise provider_error(
            status=response.status_code,
            body=error_body,
            headers=response.headers,
            secret=endpoint.api_key,
        )
    return response


Frame = TypeVar("Frame")


@asynccontextmanager
async def open_stream(
    endpoint: Endpoint,
    url: str,
    *,
    json_body: Mapping[str, Any],
    headers: Mapping[str, str],
    frames: Callable[[Response], AsyncGenerator[Frame, None]],
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[AsyncGenerator[Frame, None]]:
    """POST and hold the response open for streaming; the body as `frames(response)` splits
    it (`framing.sse_events`, ...). An error status raises its typed error before the body is
    read; a transport failure while the caller reads the body (reset, cut, timeout) is raised
    as its typed error too. The frames and the response are closed however the caller stops
    reading (see `framing`)."""
    response = await _send(endpoint, "POST", url, headers, json_body, params)
    try:
        async with aclosing(frames(response)) as framed:
            yield framed
    except WireError as exc:
        raise provider_error(exc=exc, secret=endpoint.api_key) from None
    finally:
        await response.aclose()


async def request_json(
    endpoint: Endpoint,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> Any:
    """Send one request and return its parsed JSON body, or raise its typed error."""
    response = await _send(endpoint, method, url, headers, json_body, params)
    try:
        content = await response.aread()
    except WireError as exc:
        raise provider_error(exc=exc, secret=endpoint.api_key) from None
    finally:
        await response.aclose()
    return loads(content)


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")
