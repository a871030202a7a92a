"""Recognise sensitive values in a column's sample values: the second half of L1.

Names lie (``notes`` holding e-mail addresses, ``email_sha256`` holding plain ones), values do
not. Each recogniser decides for one value; :func:`recognize_values` decides for a column. A
recogniser *matches the column* when its share of the samples reaches ``min_ratio``, where the
share is counted over the samples that are either of its kind or of no recognised kind at all:

    ratio = matched / (matched + unrecognised)

Samples recognised as *another* sensitive kind are set aside rather than counted against it, so
a contact column mixing e-mail addresses and phone numbers is found to hold both, and adding a
sample that is recognised never lowers any recogniser's share (what the property tests check).

Checks are strict where a checksum exists, because a bare pattern matches too much: card numbers
must pass the Luhn check and start with an issued prefix, IBANs must pass ISO 7064 mod 97-10
(and have their country's length when the country is known), US social security numbers must
be written ``AAA-GG-SSSS`` with an area/group/serial the SSA can issue. A bare nine-digit
number is too often some other identifier to be called an SSN, and a bare ten-digit number too
often an order number to be called a phone number.

>>> [m.recognizer for m in recognize_values(["4111 1111 1111 1111", "5500-0000-0000-0004"])]
['credit_card']
>>> luhn_valid("4111111111111112")
False
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from lacuna_orchestration.model import Evidence, Layer, Tier

__all__ = [
    "DEFAULT_RECOGNIZERS",
    "ValueMatch",
    "ValueRecognizer",
    "birth_date_age",
    "iban_valid",
    "is_credit_card",
    "is_email",
    "is_iban",
    "is_ip_address",
    "is_phone",
    "is_us_ssn",
    "luhn_valid",
    "recognize_values",
]

# -- single values ------------------------------------------------------------------------

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def is_email(text: str) -> bool:
    """A mailbox address as people write them (``local@domain.tld``), at most 254 characters."""
    return len(text) <= 254 and "@" in text and _EMAIL.match(text) is not None


_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-/]{7,24}$")
# North American numbers: optional +1, area code (parentheses allowed), 3 + 4 digits with a
# separator before the last group.
_NANP = re.compile(r"^(?:\+?1[\s.\-]?)?(?:\(\d{3}\)|\d{3})[\s.\-]?\d{3}[\s.\-]\d{4}$")
# National numbers with a trunk prefix 0, written in groups (UK 020 7946 0958, DE 030 1234567,
# FR 01 23 45 67 89): at least one separator, every group after the first of 2+ digits.
_TRUNK = re.compile(r"^\(?0\d{1,5}\)?(?:[\s.\-/]\d{2,8}){1,4}$")


def is_phone(text: str) -> bool:
    """E.164 (``+14155552671``), ``00`` international, North American and grouped national
    (trunk ``0``) formats. Bare digit strings are not phone numbers here: too many ids look
    the same."""
    if not _PHONE_CHARS.match(text):
        return False
    digits = sum(ch.isdigit() for ch in text)
    if text.startswith("+"):
        return 8 <= digits <= 15 and text[1:2] != "0"
    if text.startswith("00") and text[2:3] not in ("0", ""):
        return 10 <= digits <= 15 and any(not ch.isdigit() for ch in text)
    if _NANP.match(text):
        return True
    return 9 <= digits <= 12 and _TRUNK.match(text) is not None


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number satisfies."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


_CARD_SHAPE = re.compile(r"^\d(?:[ \-]?\d){12,18}$")
# Issuer prefixes in use (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro,
# Mir, RuPay ...): every major network starts with 2-6; 1, 7, 8, 9 and 0 are not card ranges.
_CARD_PREFIX = re.compile(r"^(?:4|5[0-9]|2[2-7]|3[0-9]|6[0-9])")


def is_credit_card(text: str) -> bool:
    """13-19 digits (spaces or dashes allowed), an issued prefix and a valid Luhn check digit;
    a run of one repeated digit is a placeholder, not a card."""
    if not _CARD_SHAPE.match(text):
        return False
    digits = text.replace(" ", "").replace("-", "")
    if len(set(digits)) == 1 or not _CARD_PREFIX.match(digits):
        return False
    return luhn_valid(digits)


# IBAN length per country (ISO 13616 registry). Unknown countries only get the checksum.
_IBAN_LENGTHS: dict[str, int] = {
    entry[:2]: int(entry[2:])
    for entry in (  # noqa: SIM905 - the registry table reads best as text
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
        "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
        "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
        "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
        "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20"
    ).split()
}
_IBAN_SHAPE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")


def iban_valid(compact: str) -> bool:
    """ISO 7064 mod 97-10 over an IBAN without spaces: move the first four characters to the
    end, read letters as 10..35, and the number modulo 97 must be 1."""
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def is_iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not _IBAN_SHAPE.match(compact):
        return False
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    return iban_valid(compact)


_SSN = re.compile(r"^(\d{3})([- ])(\d{2})\2(\d{4})$")
# Numbers the SSA published in advertising and never assigned to a person.
_SSN_ADVERTISED = frozenset({"078051120", "219099999", "457555462"})


def is_us_ssn(text: str) -> bool:
    """``AAA-GG-SSSS`` (or with spaces) with an issuable area (not 000, 666 or 9xx), group (not
    00) and serial (not 0000), and not one of the numbers used in advertising."""
    found = _SSN.match(text)
    if found is None:
        return False
    area, _, group, serial = found.groups()
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_ADVERTISED


_IP_SHAPE = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address, as ``ipaddress`` parses it (no leading zeros in IPv4)."""
    if not _IP_SHAPE.match(text) or (text.count(".") != 3 and ":" not in text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_ISO_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
_DAY_FIRST = re.compile(r"^(\d{1,2})[./\-](\d{1,2})[./\-](\d{4})$")


def _parse_date(value: object) -> date | None:
    """A calendar date from a ``date``, a midnight ``datetime`` or a date-only string (ISO, day-first
    ``31.12.1980``/``31/12/1980`` or month-first ``12/31/1980`` when the day-first reading is
    impossible). Timestamps with a time of day are events, not birth dates."""
    if isinstance(value, datetime):
        midnight = (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)
        return value.date() if midnight else None
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    found = _ISO_DATE.match(value)
    if found:
        year, month, day = (int(g) for g in found.groups())
        return _safe_date(year, month, day)
    found = _DAY_FIRST.match(value)
    if found:
        first, second, year = (int(g) for g in found.groups())
        return _safe_date(year, second, first) or _safe_date(year, first, second)
    return None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def birth_date_age(value: object, *, today: date | None = None) -> int | None:
    """Age in whole years of a person born on ``value``, or ``None`` when it is not a date or
    lies in the future."""
    born = _parse_date(value)
    if born is None:
        return None
    today = today or date.today()
    if born > today:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


# -- columns ------------------------------------------------------------------------------

_PERSONAL = frozenset({"PII", "GDPR"})


@dataclass(frozen=True, slots=True)
class ValueRecognizer:
    """One kind of sensitive value: how to spot one, and what a column of them is."""

    id: str
    label: str  # plural noun for messages: "e-mail addresses"
    tier: Tier
    tags: frozenset[str]
    confidence: float
    test: Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A recogniser that matched a column, with the counts behind the decision."""

    recognizer: str
    label: str
    matched: int
    unrecognized: int
    other_kinds: int
    min_ratio: float
    tier: Tier
    tags: frozenset[str]
    confidence: float

    @property
    def ratio(self) -> float:
        return self.matched / (self.matched + self.unrecognized)

    def describe(self) -> str:
        text = (
            f"{self.matched} of {self.matched + self.unrecognized} sample values look like "
            f"{self.label} (ratio {self.ratio:.2f} >= {self.min_ratio:.2f})"
        )
        if self.other_kinds:
            text += f"; {self.other_kinds} of another recognised kind set aside"
        return text

    def evidence(self, target: str) -> Evidence:
        return Evidence(
            layer=Layer.HEURISTIC,
            source=f"value:{self.recognizer}",
            target=target,
            detail=self.describe(),
            confidence=self.confidence,
        )


DEFAULT_RECOGNIZERS: tuple[ValueRecognizer, ...] = (
    ValueRecognizer(
        "email",
        "e-mail addresses",
        Tier.PROPRIETARY,
        _PERSONAL,
        0.95,
        is_email,
    ),
    ValueRecognizer(
        "phone", "phone numbers", Tier.PROPRIETARY, _PERSONAL, 0.85, is_phone
    ),
    ValueRecognizer(
        "credit_card",
        "payment card numbers (Luhn-valid)",
        Tier.PROPRIETARY,
        frozenset({"PII", "PCI", "FINANCIAL"}),
        0.97,
        is_credit_card,
    ),
    ValueRecognizer(
        "iban",
        "IBANs (mod-97 valid)",
        Tier.PROPRIETARY,
        frozenset({"PII", "FINANCIAL"}),
        0.97,
        is_iban,
    ),
    ValueRecognizer(
        "us_ssn",
        "US social security numbers",
        Tier.PROPRIETARY,
        _PERSONAL,
        0.9,
        is_us_ssn,
    ),
    ValueRecognizer(
        "ip_address",
        "IP addresses",
        Tier.PROPRIETARY,
        _PERSONAL,
        0.85,
        is_ip_address,
    ),
)

BIRTH_DATE = "birth_date"
_BIRTH_DATE_TAGS = _PERSONAL
_BIRTH_DATE_CONFIDENCE = 0.7
_FEW_SAMPLES = 3  # below this many matches a recogniser's confidence is discounted
_FEW_SAMPLES_FACTOR = 0.9


def _as_text(value: object) -> str | None:
    """The text a recogniser looks at; ``None`` for empty values and non-scalars."""
    if value is None or isinstance(value, (bytes, bytearray, bool)):
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def recognize_values(
    samples: Iterable[object],
    *,
    min_ratio: float = 0.6,
    max_samples: int = 1000,
    min_age: int = 16,
    max_age: int = 100,
    today: date | None = None,
    recognizers: Iterable[ValueRecognizer] = DEFAULT_RECOGNIZERS,
) -> list[ValueMatch]:
    """The recognisers whose share of ``samples`` reaches ``min_ratio`` (see the module doc).

    Only the first ``max_samples`` non-empty samples are read. Dates count as birth dates when
    the person would be ``min_age``..``max_age`` years old: recent event dates do not, and a
    minor's birth date is left to the column name.
    """
    kinds = tuple(recognizers)
    counts = dict.fromkeys([k.id for k in kinds] + [BIRTH_DATE], 0)
    unrecognized = 0
    seen = 0
    for raw in samples:
        text = _as_text(raw)
        if text is None:
            continue
        seen += 1
        if seen > max_samples:
            break
        hit = False
        for kind in kinds:
            if kind.test(text):
                counts[kind.id] += 1
                hit = True
        age = birth_date_age(raw if isinstance(raw, date) else text, today=today)
        if age is not None and min_age <= age <= max_age:
            counts[BIRTH_DATE] += 1
            hit = True
        if not hit:
            unrecognized += 1
    recognized_total = min(seen, max_samples) - unrecognized
    matches = []
    specs = [(k.id, k.label, k.tier, k.tags, k.confidence) for k in kinds]
    specs.append(
        (
            BIRTH_DATE,
            f"birth dates (age {min_age}-{max_age})",
            Tier.PROPRIETARY,
            _BIRTH_DATE_TAGS,
            _BIRTH_DATE_CONFIDENCE,
        )
    )
    for kind_id, label, tier, tags, confidence in specs:
        matched = counts[kind_id]
        if matched == 0 or matched / (matched + unrecognized) < min_ratio:
            continue
        if matched < _FEW_SAMPLES:
            confidence = round(confidence * _FEW_SAMPLES_FACTOR, 4)
        matches.append(
            ValueMatch(
                recognizer=kind_id,
                label=label,
                matched=matched,
                unrecognized=unrecognized,
                other_kinds=max(recognized_total - matched, 0),
                min_ratio=min_ratio,
                tier=tier,
                tags=tags,
                confidence=confidence,
            )
        )
    return matches
