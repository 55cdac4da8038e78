"""The built-in privacy agent: which kinds of sensitive data a prompt holds, by pattern.

Pure and fast (compiled patterns, a cheap pre-check before each scan): it runs on every routed
prompt, inside the request's worker-thread hop (`routing.pipeline.admission.prepare`), never on
the event loop. It answers only the names of the detectors that fired, never the matched text,
so that what it found cannot leak into a trace, a log line or an error (docs/routing.md,
"Privacy").

Detectors:
- `secret`: API keys and tokens of common providers (OpenAI / Anthropic `sk-…`, AWS `AKIA…`,
  GitHub `ghp_…` / `github_pat_…`, Slack `xox…`, Google `AIza…`, Stripe `sk_live_…`, JSON web
  tokens) and `password=` / `api_key:` assignments whose value mixes letters and digits;
- `private_key`: a PEM `-----BEGIN … PRIVATE KEY-----` block;
- `email`: an e-mail address;
- `phone`: an E.164 number (`+` and 8 to 15 digits) or a common national format (North American
  `(555) 123-4567`, a leading-zero trunk number of 10 or 11 digits in groups: `020 7946 0958`,
  `06 12 34 56 78`);
- `card`: a payment card number of 13 to 19 digits (spaces or dashes allowed) with a known
  issuer prefix and a valid Luhn check digit;
- `iban`: an IBAN whose mod-97 checksum holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DETECTORS = ("secret", "private_key", "email", "phone", "card", "iban")

# Provider tokens, each run only when its literal marker is in the text (a C substring search);
# a pattern that starts with a literal is itself searched for by that literal.
_TOKENS = (
    ("sk-", re.compile(r"sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_\-]{20,}")),
    ("AKIA", re.compile(r"AKIA[0-9A-Z]{16}(?![0-9A-Za-z])")),
    ("ASIA", re.compile(r"ASIA[0-9A-Z]{16}(?![0-9A-Za-z])")),
    ("gh", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}")),
    ("github_pat_", re.compile(r"github_pat_[A-Za-z0-9_]{22,}")),
    ("xox", re.compile(r"xox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("AIza", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
    ("k_live_", re.compile(r"[rs]k_live_[0-9A-Za-z]{16,}")),
    ("eyJ", re.compile(r"eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}")),
)
# An assignment of a concrete value (letters and digits mixed, no placeholder), searched in the
# lower-cased text.
_ASSIGNED_MARKERS = ("pass", "pwd", "key", "token")
_ASSIGNED = re.compile(
    r"(?:pass(?:word|wd)|pwd|api[_\-]?key|secret[_\-]?key|access[_\-]?token|auth[_\-]?token)"
    r"[\"']?\s*[:=]\s*[\"']?(?=[^\s\"'<>{}$]*\d)(?=[^\s\"'<>{}$]*[a-z])[^\s\"'<>{}$]{8,}"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*\.)+"
    # Not an image's retina suffix (icon@2x.png).
    r"(?!(?:png|jpe?g|gif|svg|webp)\b)[A-Za-z]{2,24}\b"
)
_PHONE_E164 = re.compile(r"(?<![\w+])\+[1-9](?:[ .\-]?\(?\d\)?){7,14}(?![\d\-])")
# These start with a digit or "(" (the regex engine skips to those); what may come before a
# match is checked by `_starts_clean`.
_PHONE_NANP = re.compile(r"(?:\(\d{3}\) ?|\d{3}[.\-])\d{3}[.\-]\d{4}(?![\w\-.]\d)")
_PHONE_TRUNK = re.compile(r"0\d{1,4}(?:[ .\-]\d{2,4}){2,4}(?![\w\-./:]?\d)")
# Grouped as cards print them (4-4-4-4, 4-6-5, 4-4-4-2) or run together; not loose digits.
_CARD = re.compile(r"\d{4}(?:[ \-]?\d{2,7}){1,4}(?![\d\-.]?\d)")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6(?:011|5|4[4-9])")


def _starts_clean(text: str, start: int, after: str) -> bool:
    """Whether the match at `start` is not the tail of a longer token (a word, a version)."""
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isalnum() or before == "_" or before in after)


def _secret_found(text: str) -> bool:
    for marker, pattern in _TOKENS:
        if marker in text:
            for match in pattern.finditer(text):
                if _starts_clean(text, match.start(), ""):
                    return True
    lower = text.lower()
    if any(marker in lower for marker in _ASSIGNED_MARKERS):
        return any(_starts_clean(lower, m.start(), "") for m in _ASSIGNED.finditer(lower))
    return False


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _card_found(text: str) -> bool:
    for match in _CARD.finditer(text):
        if not _starts_clean(text, match.start(), "-."):
            continue
        digits = _digits(match.group())
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and _luhn(digits):
            return True
    return False


def _iban_found(text: str) -> bool:
    for match in _IBAN.finditer(text):
        if not _starts_clean(text, match.start(), ""):
            continue
        iban = match.group().replace(" ", "")
        if not 15 <= len(iban) <= 34:
            continue
        moved = iban[4:] + iban[:4]
        if int("".join(str(int(c, 36)) for c in moved)) % 97 == 1:
            return True
    return False


def _phone_found(text: str) -> bool:
    if "+" in text:
        for match in _PHONE_E164.finditer(text):
            if 8 <= len(_digits(match.group())) <= 15:
                return True
    for match in _PHONE_NANP.finditer(text):
        if _starts_clean(text, match.start(), "-./:"):
            return True
    for match in _PHONE_TRUNK.finditer(text):
        if _starts_clean(text, match.start(), "-./:") and 10 <= len(_digits(match.group())) <= 11:
            return True
    return False


def _has_digit_run(text: str) -> bool:
    return any(c.isdigit() for c in text)


# Each detector: a cheap pre-check that rules most prompts out, then the scan.
_CHECKS: dict[str, tuple[Callable[[str], bool], Callable[[str], bool]]] = {
    "secret": (lambda t: True, _secret_found),
    "private_key": (lambda t: "PRIVATE KEY-----" in t, lambda t: bool(_PRIVATE_KEY.search(t))),
    "email": (lambda t: "@" in t, lambda t: _EMAIL.search(t) is not None),
    "phone": (_has_digit_run, _phone_found),
    "card": (_has_digit_run, _card_found),
    "iban": (_has_digit_run, _iban_found),
}


def privacy_scan(text: str, detectors: Iterable[str] = DETECTORS) -> tuple[str, ...]:
    """The names of the detectors that fire on `text`, in `DETECTORS` order; never the text."""
    wanted = set(detectors)
    found = []
    for name in DETECTORS:
        if name not in wanted:
            continue
        precheck, scan = _CHECKS[name]
        if precheck(text) and scan(text):
            found.append(name)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class PrivacySpec:
    """A policy's privacy agent: on (the default) or off, and which detectors it runs."""

    enabled: bool = True
    detectors: tuple[str, ...] = DETECTORS

    @classmethod
    def of(cls, router: Mapping[str, Any] | None) -> PrivacySpec:
        """From a policy's `router` JSON, key `privacy` (checked by `privacy_errors`)."""
        value = (router or {}).get("privacy") or {}
        return cls(
            enabled=bool(value.get("enabled", True)),
            detectors=tuple(value["detectors"]) if "detectors" in value else DETECTORS,
        )


def privacy_errors(value: Any) -> list[str]:
    """{"enabled": bool, "detectors": [names from DETECTORS]}, both optional."""
    if not isinstance(value, dict):
        return ["must be a mapping with enabled and detectors"]
    errors = [
        f"unknown key {key!r}; expected enabled or detectors"
        for key in value
        if key not in ("enabled", "detectors")
    ]
    if "enabled" in value and not isinstance(value["enabled"], bool):
        errors.append("enabled must be true or false")
    detectors = value.get("detectors", [])
    if not isinstance(detectors, list) or not all(isinstance(d, str) for d in detectors):
        errors.append(f"detectors must be a list of names from {', '.join(DETECTORS)}")
    else:
        errors += [
            f"unknown detector {d!r}; expected one of {', '.join(DETECTORS)}"
            for d in detectors
            if d not in DETECTORS
        ]
    return errors
