"""Value recognisers: single values (checksums included), the column-level ratio threshold,
and how value evidence combines with name rules (it raises, never lowers)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lacuna_orchestration.classify.heuristics import HeuristicClassifier
from lacuna_orchestration.classify.values import (
    birth_date_age,
    iban_valid,
    is_credit_card,
    is_email,
    is_iban,
    is_ip_address,
    is_phone,
    is_us_ssn,
    luhn_valid,
    recognize_values,
)
from lacuna_orchestration.model import Layer, Tier

TODAY = date(2026, 11, 23)

VALID_CARDS = ["4111111111111111", "5500 0000 0000 0004", "3782-822463-10005", "6011111111111117"]
VALID_IBANS = [
    "GB82WEST12345698765432",
    "DE89 3704 0044 0532 0130 00",
    "NL91ABNA0417164300",
    "FR1420041010050500013M02606",
]
EMAILS = ["ada@example.com", "j.doe+news@mail.example.co.uk", "x_y@sub.example.org"]
PHONES = ["+14155552671", "+44 20 7946 0958", "(415) 555-2671", "020 7946 0958"]
SSNS = ["123-45-6789", "234 56 7890", "521-12-3456"]
IPS = ["192.168.1.10", "10.0.0.1", "2001:db8::1", "fe80::1ff:fe23:4567:890a"]


@pytest.fixture(scope="module")
def clf() -> HeuristicClassifier:
    return HeuristicClassifier.from_file()


# -- single values --------------------------------------------------------------------------


def test_luhn_check_separates_valid_and_invalid_cards():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111-1111")
    for card in VALID_CARDS:
        assert is_credit_card(card), card
    for bad in [
        "4111111111111112",
        "5500 0000 0000 0005",
        "0000000000000000",
        "1234567812345670",
        "4111",
        "41111111111111111111",
        "order-4111111111111111",
    ]:
        assert not is_credit_card(bad), bad


def test_iban_checksum_and_country_length():
    for iban in VALID_IBANS:
        assert is_iban(iban), iban
    assert iban_valid("GB82WEST12345698765432")
    assert not is_iban("GB82WEST12345698765433")  # one digit off: mod 97 fails
    assert not is_iban("GB82WEST1234569876543")  # GB IBANs have 22 characters
    assert not is_iban("DE89370400440532013000XX")
    assert not is_iban("not an iban at all")


def test_us_ssn_excludes_invalid_areas_groups_serials_and_bare_digits():
    for ssn in SSNS:
        assert is_us_ssn(ssn), ssn
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "987-65-4321",
        "123-00-4567",
        "123-45-0000",
        "078-05-1120",
        "123456789",
        "123-45 6789",
        "12-345-6789",
    ]:
        assert not is_us_ssn(bad), bad


def test_phone_formats_and_lookalikes():
    for phone in [
        *PHONES,
        "415.555.2671",
        "+1 (415) 555-2671",
        "0049 30 12345678",
        "01 23 45 67 89",
    ]:
        assert is_phone(phone), phone
    for bad in [
        "12345",
        "5551234567",
        "2024-01-15",
        "1234567.89",
        "123-45-6789",
        "192.168.1.1",
        "0012345678",
        "+0123456789",
        "call me",
    ]:
        assert not is_phone(bad), bad


def test_email_and_ip():
    for email in EMAILS:
        assert is_email(email)
    for bad in ["ada@", "@example.com", "ada example.com", "ada@localhost", "a@b.c"]:
        assert not is_email(bad), bad
    for ip in IPS:
        assert is_ip_address(ip), ip
    for bad in ["256.1.1.1", "1.2.3", "01.2.3.4", "abc", "1.2.3.4.5", "12:30"]:
        assert not is_ip_address(bad), bad


def test_birth_date_age_reads_common_formats_and_rejects_events():
    assert birth_date_age("1980-05-17", today=TODAY) == 46
    assert birth_date_age("17.05.1980", today=TODAY) == 46
    assert birth_date_age("05/17/1980", today=TODAY) == 46  # month first when day first fails
    assert birth_date_age(date(2000, 11, 24), today=TODAY) == 25
    assert birth_date_age(datetime(1990, 1, 1), today=TODAY) == 36
    assert birth_date_age(datetime(1990, 1, 1, 14, 30), today=TODAY) is None  # an event
    assert birth_date_age("1990-01-01T14:30:00", today=TODAY) is None
    assert birth_date_age("2030-01-01", today=TODAY) is None
    assert birth_date_age("1980-02-30", today=TODAY) is None


# -- columns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "recognizer"),
    [
        (EMAILS, "email"),
        (PHONES, "phone"),
        (VALID_CARDS, "credit_card"),
        (VALID_IBANS, "iban"),
        (SSNS, "us_ssn"),
        (IPS, "ip_address"),
        (["1980-05-17", "1975-12-01", "2001-03-09", "1960-07-30"], "birth_date"),
    ],
)
def test_each_recognizer_matches_a_column_of_its_kind(samples: list[str], recognizer: str):
    matches = recognize_values(samples, today=TODAY)
    assert [m.recognizer for m in matches] == [recognizer]
    assert matches[0].tier is Tier.PROPRIETARY
    assert matches[0].ratio == 1.0


def test_invalid_cards_do_not_make_a_card_column():
    invalid = ["4111111111111112", "5500000000000005", "6011111111111118", "4012888888881882"]
    assert recognize_values(invalid) == []
    assert [m.recognizer for m in recognize_values(VALID_CARDS)] == ["credit_card"]


def test_event_dates_are_not_birth_dates():
    recent = ["2024-01-15", "2025-06-30", "2019-03-01", "2026-11-01"]
    assert recognize_values(recent, today=TODAY) == []


def test_ratio_threshold():
    junk = ["n/a", "unknown"]
    at_threshold = recognize_values([*EMAILS, *junk])  # 3 of 5 = 0.6
    assert [m.recognizer for m in at_threshold] == ["email"]
    assert at_threshold[0].ratio == pytest.approx(0.6)
    below = recognize_values([*EMAILS[:2], *junk])  # 2 of 4 = 0.5
    assert below == []
    assert recognize_values([*EMAILS[:2], *junk], min_ratio=0.5) != []


def test_empty_values_are_ignored_and_other_kinds_set_aside():
    mixed = [*EMAILS, *PHONES[:3], None, "", "   ", "junk"]
    matches = {m.recognizer: m for m in recognize_values(mixed)}
    assert set(matches) == {"email", "phone"}
    assert (matches["email"].matched, matches["email"].unrecognized) == (3, 1)
    assert matches["email"].other_kinds == 3
    assert "set aside" in matches["email"].describe()


def test_few_matches_lower_confidence_and_max_samples_caps_reading():
    one = recognize_values(["4111111111111111"])
    many = recognize_values(VALID_CARDS)
    assert one[0].confidence < many[0].confidence
    capped = recognize_values(["junk"] * 10 + VALID_CARDS * 10, max_samples=10)
    assert capped == []


def test_no_samples_no_matches():
    assert recognize_values([]) == []
    assert recognize_values([None, "", b"bytes", True]) == []


# -- values inside classify_column ---------------------------------------------------------------


def test_values_reveal_pii_in_an_innocent_name(clf: HeuristicClassifier):
    result = clf.classify_column("notes", samples=EMAILS)
    assert result.tier is Tier.PROPRIETARY
    assert {"PII", "GDPR"} <= result.tags
    (evidence,) = result.evidence
    assert evidence.source == "value:email"
    assert evidence.layer is Layer.HEURISTIC
    assert evidence.target == "notes"
    assert "3 of 3 sample values look like e-mail addresses" in evidence.detail
    assert result.confidence == pytest.approx(0.95)


def test_values_raise_a_hashed_name_back_to_pii(clf: HeuristicClassifier):
    result = clf.classify_column("email_sha256", samples=EMAILS)
    assert result.tier is Tier.PROPRIETARY
    assert {"ANONYMIZED", "PII"} <= result.tags
    assert {e.source for e in result.evidence} == {"email", "anonymized_value", "value:email"}


def test_values_never_lower_what_the_name_found(clf: HeuristicClassifier):
    by_name = clf.classify_column("ssn")
    with_values = clf.classify_column("ssn", samples=["n/a", "redacted", "", None])
    assert with_values == by_name
    luhn_invalid = clf.classify_column("card_number", samples=["4111111111111112"] * 5)
    assert luhn_invalid.tier is Tier.PROPRIETARY


def test_card_column_named_vaguely_is_found_by_luhn(clf: HeuristicClassifier):
    assert clf.classify_column("zorblat", samples=["4111111111111112"] * 4).tier is Tier.PUBLIC
    found = clf.classify_column("zorblat", samples=VALID_CARDS)
    assert found.tier is Tier.PROPRIETARY
    assert "PCI" in found.tags


def test_values_raise_an_ordinary_looking_column(clf: HeuristicClassifier):
    """A generic name (a reference, a note id) is INTERNAL by its shape; card numbers inside
    make it cardholder data all the same."""
    by_name = clf.classify_column("payment_ref")
    assert (by_name.tier, by_name.tags) == (Tier.INTERNAL, frozenset())
    found = clf.classify_column("payment_ref", samples=VALID_CARDS)
    assert found.tier is Tier.PROPRIETARY
    assert "PCI" in found.tags
    assert {"record_key", "value:credit_card"} <= {e.source for e in found.evidence}


def test_value_settings_come_from_the_rules_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "values: {min_ratio: 0.9}\n"
        "rules:\n  - id: r\n    words: [zzz]\n    tier: PUBLIC\n    confidence: 0.5\n",
        encoding="utf-8",
    )
    strict = HeuristicClassifier.from_file(rules)
    four_of_five = [*VALID_CARDS, "junk"]
    assert strict.classify_column("c", samples=four_of_five).tier is Tier.PUBLIC
    assert HeuristicClassifier.from_file().classify_column("c", samples=four_of_five).tier is (
        Tier.PROPRIETARY
    )


# -- properties -----------------------------------------------------------------------------

RECOGNISED = [*EMAILS, *PHONES, *VALID_CARDS, *VALID_IBANS, *SSNS, *IPS, "1980-05-17"]
ANY_SAMPLE = st.one_of(
    st.sampled_from(RECOGNISED),
    st.text(max_size=24),
    st.integers(),
    st.none(),
    st.sampled_from(["4111111111111112", "n/a", "2025-01-01", "123456789"]),
)
NAMES = st.sampled_from(
    [
        "notes",
        "email",
        "email_sha256",
        "customer_count",
        "country_code",
        "ref",
        "payload",
        "ssn",
        "avg_amount",
        "description",
    ]
)


@settings(max_examples=150, deadline=None)
@given(name=NAMES, samples=st.lists(ANY_SAMPLE, max_size=12), extra=st.sampled_from(RECOGNISED))
def test_adding_a_recognised_sample_never_lowers_tier_or_drops_tags(
    clf: HeuristicClassifier, name: str, samples: list[object], extra: str
):
    before = clf.classify_column(name, samples=samples)
    after = clf.classify_column(name, samples=[*samples, extra])
    assert after.tier >= before.tier
    assert before.tags <= after.tags


@settings(max_examples=150, deadline=None)
@given(name=NAMES, samples=st.lists(ANY_SAMPLE, max_size=12))
def test_samples_never_lower_the_name_classification(
    clf: HeuristicClassifier, name: str, samples: list[object]
):
    by_name = clf.classify_column(name)
    with_samples = clf.classify_column(name, samples=samples)
    assert with_samples.tier >= by_name.tier
    assert by_name.tags <= with_samples.tags
    assert set(by_name.evidence) <= set(with_samples.evidence)
