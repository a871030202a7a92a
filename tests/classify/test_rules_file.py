"""The rules file is steward-edited data: a bad one fails with one line naming the file, the
rule and the problem; a good custom one replaces the bundled rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lacuna_orchestration.classify.heuristics import (
    DEFAULT_RULES_FILE,
    HeuristicClassifier,
    load_rules,
)
from lacuna_orchestration.errors import ClassificationError, LacunaError
from lacuna_orchestration.model import Tier

GOOD_RULE = """\
  - id: employee_badge
    description: badge numbers
    applies_to: column
    words: [badge number, badge id]
    tier: INTERNAL
    tags: [IDENTIFIER]
    confidence: 0.85
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def rules_with(rule_body: str) -> str:
    return "rules:\n" + rule_body


def test_bundled_rules_load_and_cover_the_required_families():
    rules = load_rules()
    ids = {r.id for r in rules.rules}
    assert rules.source == str(DEFAULT_RULES_FILE)
    assert {
        "email",
        "phone",
        "national_id",
        "payment_card",
        "bank_account",
        "online_identifier_ip",
        "device_identifier",
        "birth_date_age",
        "person_name",
        "postal_address",
        "geolocation",
        "medical_record",
        "health_data",
        "compensation",
        "financial_amount",
        "credentials",
        "special_category",
        "customer_identifier",
        "anonymized_value",
        "aggregate_measure",
        "country_reference",
        "currency_reference",
        "dataset_people",
        "dataset_health",
        "dataset_payroll",
        "dataset_reference",
        "dataset_public_path",
    } <= ids
    assert rules.abbreviations["no"] == "number"  # quoted key survived YAML 1.1
    assert 0 < rules.no_match_confidence < 0.5


def test_custom_rules_file_replaces_the_bundled_one(tmp_path: Path):
    clf = HeuristicClassifier.from_file(write(tmp_path, rules_with(GOOD_RULE)))
    result = clf.classify_column("badgeNumber")
    assert result.tier is Tier.INTERNAL
    assert [e.source for e in result.evidence] == ["employee_badge"]
    assert clf.classify_column("email").tier is Tier.PUBLIC  # bundled rules are gone


def test_regex_and_raw_regex_rules(tmp_path: Path):
    text = rules_with(
        """\
  - id: legacy_code
    applies_to: column
    regex: ['^x \\d+ code$']
    tier: INTERNAL
    tags: [LEGACY]
    confidence: 0.7
  - id: vault_path
    applies_to: dataset
    raw_regex: ['^vault://']
    tier: PROPRIETARY
    tags: [CREDENTIALS]
    confidence: 0.9
"""
    )
    clf = HeuristicClassifier.from_file(write(tmp_path, text))
    result = clf.classify_column("X7_Code")
    assert result.tier is Tier.INTERNAL
    assert "regex" in result.evidence[0].detail
    assert clf.classify_dataset_name("vault://prod::kv/db").tier is Tier.PROPRIETARY
    assert clf.classify_dataset_name("s3://b::kv/db").tier is Tier.PUBLIC


FALLBACK_AND_CONTEXT = """\
  - id: any_key
    fallback: true
    words: [id, key]
    tier: INTERNAL
    confidence: 0.9
  - id: badge
    words: [badge id]
    tier: PROPRIETARY
    tags: [PII]
    confidence: 0.85
  - id: country
    words: [country code]
    tier: PUBLIC
    confidence: 0.9
  - id: lookup_table
    when_dataset: [lookup]
    exclude: [secret]
    tier: PUBLIC
    confidence: 0.9
"""


def test_fallback_rule_counts_only_when_no_other_rule_matched(tmp_path: Path):
    clf = HeuristicClassifier.from_file(write(tmp_path, rules_with(FALLBACK_AND_CONTEXT)))
    order = clf.classify_column("order_id")
    assert [e.source for e in order.evidence] == ["any_key"]
    assert (order.tier, order.confidence) == (Tier.INTERNAL, 0.9)
    # a specific rule silences the fallback even when it is less sure or less sensitive
    badge = clf.classify_column("badge_id")
    assert [e.source for e in badge.evidence] == ["badge"]
    assert badge.confidence == 0.85
    country = clf.classify_column("country_code_key")
    assert [e.source for e in country.evidence] == ["country"]
    assert country.tier is Tier.PUBLIC
    assert clf.classify_column("zorblat").evidence == ()


def test_rule_with_only_when_dataset_matches_every_column_of_such_datasets(tmp_path: Path):
    clf = HeuristicClassifier.from_file(write(tmp_path, rules_with(FALLBACK_AND_CONTEXT)))
    inside = clf.classify_column("zorblat", dataset="crm.lookup_regions")
    assert [e.source for e in inside.evidence] == ["lookup_table"]
    assert "its dataset's name" in inside.evidence[0].detail
    assert inside.tier is Tier.PUBLIC and inside.confidence == 0.9
    # it is a specific rule: the fallback stays silent next to it
    assert [e.source for e in clf.classify_column("region_id", dataset="lookup").evidence] == [
        "lookup_table"
    ]
    assert clf.classify_column("zorblat", dataset="crm.regions").evidence == ()
    assert clf.classify_column("secret", dataset="lookup").evidence == ()  # excluded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n  - id: x\n", "not valid YAML at line"),
        ("- just a list\n", "must hold a mapping"),
        ("rules: []\n", "'rules' must be a non-empty list"),
        ("rulez: []\nrules: []\n", "unknown section 'rulez'"),
        (
            rules_with("  - words: [a]\n    tier: PUBLIC\n    confidence: 0.5\n"),
            "rule #1 needs an 'id'",
        ),
        (
            rules_with(GOOD_RULE.replace("tier: INTERNAL", "tier: SECRET")),
            "rule 'employee_badge': tier: unknown tier 'SECRET'",
        ),
        (
            rules_with(GOOD_RULE.replace("words:", "wrds:")),
            "rule 'employee_badge': unknown field 'wrds'",
        ),
        (
            rules_with(GOOD_RULE.replace("confidence: 0.85", "confidence: 1.5")),
            "rule 'employee_badge': confidence must be a number from 0 to 1",
        ),
        (
            rules_with(GOOD_RULE.replace("    confidence: 0.85\n", "")),
            "rule 'employee_badge': missing 'confidence'",
        ),
        (
            rules_with(GOOD_RULE.replace("applies_to: column", "applies_to: table")),
            "rule 'employee_badge': applies_to must be column, dataset or both",
        ),
        (
            rules_with(
                GOOD_RULE.replace("words: [badge number, badge id]", "regex: ['(unclosed']")
            ),
            "rule 'employee_badge': regex '(unclosed' does not compile",
        ),
        (
            rules_with(GOOD_RULE.replace("words: [badge number, badge id]", "exclude: [x]")),
            "rule 'employee_badge': needs at least one of words",
        ),
        (
            rules_with(GOOD_RULE.replace("[badge number, badge id]", "[badge, no]")),
            "rule 'employee_badge': words item False is not text",
        ),
        (rules_with(GOOD_RULE + GOOD_RULE), "rule 'employee_badge': duplicate rule id"),
        (
            rules_with(GOOD_RULE.replace("tags: [IDENTIFIER]", "tags: ['  ']")),
            "rule 'employee_badge': tags has an empty item",
        ),
        (
            rules_with(
                GOOD_RULE.replace("tags: [IDENTIFIER]", "tags: [IDENTIFIER]\n    cap_tier: low")
            ),
            "rule 'employee_badge': cap_tier: unknown tier 'low'",
        ),
        (
            rules_with(GOOD_RULE + "    fallback: sometimes\n"),
            "rule 'employee_badge': fallback must be true or false",
        ),
        (
            rules_with(GOOD_RULE + "    fallback: true\n    suppresses: [PII]\n"),
            "rule 'employee_badge': a fallback rule cannot suppress",
        ),
        ("abbreviations:\n  no: number\n" + rules_with(GOOD_RULE), "abbreviation False"),
        ("values: {min_ratio: 0}\n" + rules_with(GOOD_RULE), "values.min_ratio must be in (0, 1]"),
        ("values: {ratio: 0.5}\n" + rules_with(GOOD_RULE), "unknown values setting 'ratio'"),
    ],
)
def test_broken_rules_file_names_file_rule_and_problem(tmp_path: Path, text: str, expected: str):
    path = write(tmp_path, text)
    with pytest.raises(ClassificationError) as caught:
        HeuristicClassifier.from_file(path)
    message = str(caught.value)
    assert message.startswith(f"rules file {path}")
    assert expected in message
    assert "\n" not in message
    assert isinstance(caught.value, LacunaError)


def test_missing_rules_file(tmp_path: Path):
    with pytest.raises(ClassificationError, match="cannot read it"):
        HeuristicClassifier.from_file(tmp_path / "nope.yaml")
