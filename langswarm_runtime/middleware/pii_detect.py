"""PII detection: compiled patterns plus checksum/shape validators, no middleware logic.

Each detector finds candidates with a regex compiled once at import, then a validator
rejects look-alikes (Luhn for cards, mod-97 for IBANs, ``ipaddress`` for IPs, contextual
rules for phone numbers and version strings). Overlapping hits are resolved by detector
priority, so a card number is never also reported as a phone number.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from langswarm_runtime.middleware.pii_entities import ENTITIES, Entity

__all__ = ["ENTITIES", "Entity", "Finding", "find_pii", "normalise"]



@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: ``text[start:end]`` is of type ``entity``."""

    entity: Entity
    start: int
    end: int
    value: str


# --- email -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%'-])[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+'-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)

# --- payment cards -------------------------------------------------------------------------

# 13-19 digits, optionally grouped by single spaces or hyphens; never glued to more digits.
_CARD = re.compile(r"(?<![\w-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\w-])(?![ -]\d)")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(d: str) -> bool:
    """Issuer prefix and length: random Luhn-valid order numbers rarely match both."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if d.startswith("6011") or two == 65 or 644 <= int(d[:3]) <= 649:
        return n in (16, 19)
    if two == 35:
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return 14 <= n <= 19
    if two == 62:
        return 16 <= n <= 19
    return False


# "order 4333343788447898": a Luhn-valid number the text itself calls something else.
_NOT_A_CARD_BEFORE = re.compile(
    r"(?i)\b(?:order|batch|invoice|tracking|ticket|serial|ref|reference|sku|part|case)"
    r"(?:\s+(?:no\.?|number|id|#))?(?:\s+(?:is|was))?\s*[#:]?\s*$"
)


def _valid_card(m: re.Match[str]) -> bool:
    raw = m.group(0)
    if _NOT_A_CARD_BEFORE.search(m.string[max(0, m.start() - 24) : m.start()]):
        return False
    seps = {c for c in raw if not c.isdigit()}
    if len(seps) > 1:  # "4111 1111-1111 1111" is not how anyone writes a card
        return False
    digits = re.sub(r"\D", "", raw)
    return _card_brand_ok(digits) and _luhn_ok(digits)


# --- IBAN ----------------------------------------------------------------------------------

_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![a-z0-9])")


def _iban_span(m: re.Match[str]) -> tuple[int, int] | None:
    """The IBAN's own span inside a greedy candidate, if its checksum holds."""
    raw = m.group(0)
    want = _IBAN_LENGTHS.get(raw[:2])
    if want is None:
        return None
    compact = raw.replace(" ", "")
    if len(compact) < want:
        return None
    # Walk to the want-th alphanumeric so trailing words are not swallowed.
    count, end = 0, 0
    for i, ch in enumerate(raw):
        if ch != " ":
            count += 1
            if count == want:
                end = i + 1
                break
    after = m.string[m.start() + end : m.start() + end + 1]
    if after.isalnum():
        return None
    iban = compact[:want]
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    if int(number) % 97 != 1:
        return None
    return m.start(), m.start() + end


# --- US SSN --------------------------------------------------------------------------------

_SSN = re.compile(
    r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])(?![ -]\d)"
)
_SSN_BARE = re.compile(
    r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\s*(?:#|no\.?|number)?\s*[:=]?\s*"
    r"(?P<v>(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4})\b"
)

# --- IP addresses --------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)(?![\w-])")
# A version string ("v1.2.3.4", "version 2.0.1.5") looks exactly like an IPv4 address.
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\bver\.?\s*|\b(?:version|release|build|section|chapter|clause|rule)\s*)$"
)

_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|:)(?:[0-9A-Fa-f]{0,4}:){1,7}"
    r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%[\w.]+)?(?![\w:])"
)


def _valid_ipv4(m: re.Match[str]) -> bool:
    before = m.string[max(0, m.start() - 10) : m.start()]
    return _VERSION_BEFORE.search(before) is None


def _valid_ipv6(m: re.Match[str]) -> bool:
    raw = m.group(0).split("%", 1)[0]
    try:
        ipaddress.IPv6Address(raw)
    except ValueError:
        return False
    groups = [g for g in re.split(r"::?", raw) if g]
    # "a::b" or "de::ad" is more likely code than an address.
    return len(groups) >= 3 or any(len(g) == 4 for g in groups)


# --- phone numbers -------------------------------------------------------------------------

_SEP = r"[ .\-\u00a0]"
_PHONE_INTL = re.compile(
    rf"(?<![\w+/-])\+[1-9]\d{{0,2}}{_SEP}?(?:\(0?\d{{1,4}}\){_SEP}?)?\d{{1,5}}"
    rf"(?:{_SEP}?\d{{1,5}}){{1,5}}(?![\w/-])(?!{_SEP}\d)"
)
_PHONE_US = re.compile(
    rf"(?<![\w+/.-])(?<!\d[ .-])(?:1{_SEP})?(?:\([2-9]\d{{2}}\){_SEP}?|[2-9]\d{{2}}(?P<s>[.\- ]))"
    rf"\d{{3}}[.\- ]\d{{4}}(?![\w/-])(?![.\- ]\d)"
)
_PHONE_TRUNK = re.compile(
    rf"(?<![\w+/.-])(?<!\d[ .-])(?:\(0\d{{1,4}}\)|0\d{{1,4}})(?:(?:{_SEP}|/)\d{{2,8}}){{1,4}}"
    rf"(?![\w/-])(?!{_SEP}\d)"
)
# Unseparated national numbers are too much like order numbers to take without a cue.
_PHONE_CUED = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|text|whatsapp|fax)\b[^\d\n]{0,12}"
    r"(?P<v>0\d{9,10}|[2-9]\d{9})(?!\w)"
)


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _valid_phone_intl(m: re.Match[str]) -> bool:
    return 8 <= _digits(m.group(0)) <= 15


def _valid_phone_us(m: re.Match[str]) -> bool:
    raw = m.group(0)
    sep = m.group("s")
    if sep is not None:  # "555-123 4567" mixes separators: not a phone in the wild
        body = raw[-8:]
        if body[3] != sep:
            return False
    return True


def _valid_phone_trunk(m: re.Match[str]) -> bool:
    raw = m.group(0)
    seps = {c for c in raw if not c.isdigit() and c not in "()"}
    if len(seps) > 1:
        return False
    # Dates ("01.02.2023"), short codes and decimal tables fall outside 10-12 digits.
    return 10 <= _digits(raw) <= 12


# --- API keys and secrets --------------------------------------------------------------------

_API_KEY = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|ant-(?:api\d\d-)?|live_|test_)?[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{40,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|(?:rk|pk|sk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r")(?![\w-])"
)
# "api_key=...", "Authorization: Bearer ...", "secret: ...": the token after the cue.
_KEYED_SECRET = re.compile(
    r"(?i)(?:(?<![a-z0-9])(?:[a-z0-9]+[_-])*(?:api[_-]?key|apikey|access[_-]?key"
    r"|secret(?:[_-]?(?:access[_-]?)?key)?|client[_-]?secret|auth[_-]?token|access[_-]?token"
    r"|token)\b[\"']?\s*[:=]\s*[\"']?|\bbearer\s+)(?P<v>[A-Za-z0-9_\-+/=.]{16,})"
)
# A password needs no entropy test: whatever follows the cue is the secret.
_PASSWORD = re.compile(
    r"(?i)(?<![a-z0-9])(?:[a-z0-9]+[_-])*(?:password|passwd|pwd|passphrase)\b[\"']?\s*[:=]\s*"
    r"[\"']?(?P<v>[^\s\"']{6,})(?<![.,;])"
)


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(token: str) -> bool:
    classes = sum(
        (
            any(c.islower() for c in token),
            any(c.isupper() for c in token),
            any(c.isdigit() for c in token),
        )
    )
    return classes >= 2 and _entropy(token) >= 3.3


# --- the detector table --------------------------------------------------------------------

Span = tuple[int, int]
_Validator = Callable[[re.Match[str]], "Span | None"]


def _whole(check: Callable[[re.Match[str]], bool]) -> _Validator:
    return lambda m: m.span() if check(m) else None


def _group(check: Callable[[str], bool] | None = None) -> _Validator:
    def validate(m: re.Match[str]) -> Span | None:
        if check is None or check(m.group("v")):
            return m.span("v")
        return None

    return validate


def _always(m: re.Match[str]) -> Span | None:
    return m.span()


_PHONE_CUES = ("phone", "tel", "mobile", "cell", "call", "text", "whatsapp", "fax")


def _has(text: str, *words: str) -> bool:
    """Cheap substring test that lets a costly cue pattern skip most messages."""
    low = text.lower()
    return any(w in low for w in words)


#: entity -> (pattern, validator, cheap pre-check on the whole text)
_DETECTORS: dict[Entity, list[tuple[re.Pattern[str], _Validator, Callable[[str], bool]]]] = {
    "api_key": [
        (_API_KEY, _always, lambda t: True),
        (_KEYED_SECRET, _group(_looks_random), lambda t: _has(t, "key", "secret", "token",
                                                                "bearer")),
        (_PASSWORD, _group(), lambda t: _has(t, "pass", "pwd")),
    ],
    "email": [(_EMAIL, _always, lambda t: "@" in t)],
    "iban": [(_IBAN, _iban_span, lambda t: True)],
    "credit_card": [(_CARD, _whole(_valid_card), lambda t: True)],
    "ssn": [
        (_SSN, _always, lambda t: True),
        (_SSN_BARE, _group(), lambda t: _has(t, "ssn", "social")),
    ],
    "ipv6": [(_IPV6, _whole(_valid_ipv6), lambda t: "::" in t or t.count(":") >= 5)],
    "ipv4": [(_IPV4, _whole(_valid_ipv4), lambda t: "." in t)],
    "phone": [
        (_PHONE_INTL, _whole(_valid_phone_intl), lambda t: "+" in t),
        (_PHONE_US, _whole(_valid_phone_us), lambda t: True),
        (_PHONE_TRUNK, _whole(_valid_phone_trunk), lambda t: "0" in t),
        (_PHONE_CUED, _group(), lambda t: _has(t, *_PHONE_CUES)),
    ],
}


def find_pii(text: str, entities: Iterable[Entity] = ENTITIES) -> list[Finding]:
    """All non-overlapping findings of the given entity types, in text order."""
    wanted = set(entities)
    taken: list[Finding] = []
    for entity in ENTITIES:
        if entity not in wanted:
            continue
        for pattern, validate, precheck in _DETECTORS[entity]:
            if not precheck(text):
                continue
            for m in pattern.finditer(text):
                span = validate(m)
                if span is None:
                    continue
                start, end = span
                if any(start < f.end and f.start < end for f in taken):
                    continue
                taken.append(Finding(entity, start, end, text[start:end]))
    taken.sort(key=lambda f: f.start)
    return taken


def normalise(entity: Entity, value: str) -> str:
    """A canonical form, so "(555) 123-4567" and "555.123.4567" hash alike."""
    if entity == "email":
        return value.lower()
    if entity in ("phone", "credit_card", "ssn"):
        digits = re.sub(r"\D", "", value)
        if entity == "phone" and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return digits
    if entity == "iban":
        return value.replace(" ", "").upper()
    if entity == "ipv6":
        try:
            return str(ipaddress.IPv6Address(value.split("%", 1)[0]))
        except ValueError:
            return value.lower()
    return value
