"""L1 name rules: one parametrised test per rule family (names that must and must not match),
name normalisation, negative rules, dataset rules and the evidence each answer carries."""

from __future__ import annotations

import pytest

from lacuna_orchestration.classify.heuristics import (
    DEFAULT_RULES_FILE,
    NO_MATCH_REASONING,
    HeuristicClassifier,
    NameNormalizer,
    load_rules,
)
from lacuna_orchestration.model import Classification, DatasetRef, Layer, Tier


@pytest.fixture(scope="module")
def clf() -> HeuristicClassifier:
    return HeuristicClassifier.from_file()


def sources(result: Classification) -> set[str]:
    return {e.source for e in result.evidence}


# rule id -> (names that must match it, names that must not)
FAMILIES: dict[str, tuple[list[str], list[str]]] = {
    "email": (
        ["email", "customer_email", "EmailAddress", "contact_emails", "work_email", "mail_address"],
        ["email_verified", "email_opt_in", "email_campaign_id", "mailbox_size", "emoji"],
    ),
    "phone": (
        ["phone", "phone_number", "mobilePhone", "tel", "ph_no", "fax", "home_telephone", "msisdn"],
        ["phone_type", "phone_model", "iphone_version", "ph_level", "telemetry"],
    ),
    "national_id": (
        [
            "ssn",
            "SSN",
            "social_security_number",
            "national_id",
            "tax_id",
            "passport_number",
            "drivers_license",
            "nino",
            "taxpayer_id",
        ],
        ["session_id", "nation", "passenger_count", "licence_plate_count"],
    ),
    "payment_card": (
        ["credit_card_number", "card_number", "cc_number", "cvv", "pan", "debitCardNumber"],
        ["card_type", "card_brand", "scorecard", "card_last_4"],
    ),
    "bank_account": (
        [
            "iban",
            "IBAN",
            "bank_account_number",
            "routing_number",
            "swift_code",
            "sort_code",
            "account_no",
        ],
        ["account_type", "bankruptcy_flag", "riverbank"],
    ),
    "online_identifier_ip": (
        ["ip", "ip_address", "IPAddress", "client_ip", "ipv4", "IPv6Address", "remote_addr"],
        ["server_ip", "ip_range", "zip", "shipping", "ip_version"],
    ),
    "device_identifier": (
        ["device_id", "mac_address", "imei", "idfa", "advertising_id", "android_id"],
        ["device_type", "mac_os_version"],
    ),
    "birth_date_age": (
        ["dob", "DOB", "date_of_birth", "birthDate", "birthday", "birth_year", "DateOfBirth"],
        ["birth_rate_country", "created_date", "update_date"],
    ),
    "age": (
        ["age", "customer_age", "patient_age", "AGE"],
        ["age_group", "account_age_days", "page", "postage", "passage", "mortgage", "message"],
    ),
    "person_name": (
        [
            "first_name",
            "firstName",
            "FIRSTNAME",
            "last_name",
            "lname",
            "fname",
            "full_name",
            "surname",
            "givenName",
            "maiden_name",
            "cardholder_name",
        ],
        [
            "file_name",
            "table_name",
            "product_name",
            "company_name",
            "host_name",
            "name",
            "username_policy",
        ],
    ),
    "username": (
        ["username", "user_name", "login", "linkedin_url", "gamertag"],
        # an app screen's name is telemetry, not a person's handle
        ["login_count", "login_attempts", "last_login_time", "last_login_at", "screen_name"],
    ),
    "postal_address": (
        [
            "address",
            "street",
            "street_address",
            "billingAddress",
            "postcode",
            "zip",
            "zip_code",
            "ZIPCODE",
            "postal_code",
            "address_line_2",
            "cust_addr",
        ],
        [
            "ip_address",
            "email_address",
            "mac_address",
            "wallet_address",
            "address_type",
            "web_address",
            "streetlight_count",
        ],
    ),
    "city_region": (["city", "town", "home_city"], ["city_population", "capacity"]),
    "geolocation": (
        ["latitude", "longitude", "lat", "lng", "gps_coordinates", "geohash", "geo_location"],
        ["plateau", "lattice", "longevity"],
    ),
    "medical_record": (
        ["mrn", "medical_record_number", "patient_id", "nhs_number", "beneficiary_id"],
        ["record_id", "medic_count"],
    ),
    "health_data": (
        [
            "diagnosis",
            "diagnosis_code",
            "icd10_code",
            "ICD_10",
            "procedure_code",
            "medication",
            "prescription",
            "rx",
            "dx_code",
            "allergies",
            "patient",
            "blood_type",
        ],
        ["stored_procedure", "drugstore_count", "diagnostic_log_level"],
    ),
    "compensation": (
        ["salary", "annual_salary", "base_sal", "wages", "bonus", "compensation", "credit_score"],
        ["salesperson", "sales_region"],
    ),
    "financial_amount": (
        [
            "revenue",
            "price",
            "amount",
            "balance",
            "txn_amount",
            "unit_price",
            "amt",
            "invoice_total",
            "net_sales",
            "grand_total",
            "cart_value",
        ],
        # a money word qualifying a key, a date or a category is not an amount
        [
            "priceless_flag",
            "paramount",
            "balanced_tree",
            "invoice_id",
            "payment_method",
            "invoice_date",
            "cost_center",
            "sales_channel",
        ],
    ),
    "financial_account": (
        ["gl_account", "general_ledger_code", "ledger_account", "account_balance"],
        # a login, customer or service account is not a money account
        ["account_id", "account_status", "service_account_id", "account_holder_name"],
    ),
    "credentials": (
        [
            "password",
            "passwd",
            "pwd",
            "password_hash",
            "api_key",
            "apiKey",
            "secret",
            "client_secret",
            "access_token",
            "refresh_token",
            "private_key",
            "pin",
        ],
        ["token_type", "token_expires_at", "password_policy", "key_type", "keyword"],
    ),
    "special_category": (
        [
            "gender",
            "sex",
            "ethnicity",
            "race",
            "religion",
            "sexual_orientation",
            "political_party",
            "trade_union_membership",
            "biometric_template",
        ],
        ["race_id", "sextant", "racetrack_name"],
    ),
    "customer_identifier": (
        [
            "customer_id",
            "customerId",
            "cust_id",
            "custid",
            "user_id",
            "userid",
            "member_id",
            "employee_number",
            "account_id",
        ],
        ["order_id", "product_id", "customer_count", "user_agent"],
    ),
    "vehicle_registration": (
        ["license_plate", "vehicleRegistrationNumber", "vin", "number_plate"],
        ["platelet_count", "plateau", "vintage"],
    ),
    "personal_attributes": (
        ["marital_status", "nationality", "citizenship", "next_of_kin", "dependents"],
        ["status", "national_holiday", "civil_engineering_cost"],
    ),
    "employee_evaluation": (
        ["performance_rating", "appraisal_score", "manager_feedback", "disciplinary_action"],
        ["review_id", "app_rating", "credit_rating", "performance_test_id"],
    ),
    "personal_document": (
        ["resume_text", "cv_url", "payslip_pdf", "profile_photo", "cover_letter"],
        ["resume_at", "job_resume_count"],
    ),
    "trade_secret": (
        ["recipe", "formulation", "ingredient_list", "acquisition_target"],
        ["formulation_id", "recipe_count", "formula_version"],
    ),
    "country_reference": (["country", "country_code", "countryName"], ["county_fair"]),
    "currency_reference": (["currency", "currency_code", "ccy"], ["concurrency"]),
    "calendar_reference": (["public_holiday", "holiday_name", "day_of_week"], ["holdings"]),
    # fallback (shape) rules: they name ordinary columns, and stay silent when a specific rule
    # knows the name - a key, date or code of personal or public data keeps that meaning
    "record_key": (
        ["id", "order_id", "OrderNumber", "sku", "tracking_no", "row_uuid", "psp_reference"],
        [
            "customer_id",
            "patient_id",
            "tax_id",
            "card_number",
            "account_number",
            "passport_number",
            "device_id",
            "country_code",
            "api_key",
        ],
    ),
    "event_time": (
        ["created_at", "updatedAt", "CreatedDate", "event_ts", "valid_from", "createdate"],
        ["date_of_birth", "dob", "birth_date", "birthday", "day_of_week"],
    ),
    "status_and_flag": (
        ["status", "event_type", "is_active", "hasAttachment", "priority", "return_reason"],
        ["gender", "marital_status", "blood_type", "ethnic_group", "credit_rating"],
    ),
    "quantity_and_metric": (
        ["qty", "weight_kg", "latency_ms", "cpu_utilization", "lead_score", "fte"],
        ["heart_rate", "credit_score", "blood_pressure", "dosage_mg"],
    ),
    "system_and_telemetry": (
        ["hostname", "user_agent", "request_path", "app_version", "stack_trace"],
        ["client_ip", "session_token", "device_id", "profile_url"],
    ),
    "organisation_and_catalogue": (
        ["department", "job_title", "cost_center", "supplier", "brand_name", "company_name"],
        ["employee_name", "company_email", "manager_name", "account_number"],
    ),
}


@pytest.mark.parametrize("rule_id", sorted(FAMILIES))
def test_rule_family_matches_its_names_and_only_them(clf: HeuristicClassifier, rule_id: str):
    positives, negatives = FAMILIES[rule_id]
    missed = [n for n in positives if rule_id not in sources(clf.classify_column(n))]
    wrongly = [n for n in negatives if rule_id in sources(clf.classify_column(n))]
    assert not missed, f"{rule_id} should match {missed}"
    assert not wrongly, f"{rule_id} should not match {wrongly}"


PHI = {"PII", "PHI", "GDPR_SPECIAL_CATEGORY"}

# (column, dataset, rule, (tier, tags)) - rules that read the dataset's name; each column is
# also classified in an unrelated dataset below, where the rule must stay silent
IN_CONTEXT: list[tuple[str, str, str, tuple[Tier, set[str]]]] = [
    ("route", "ehr.medications", "clinical_measure_in_clinical_table", (Tier.PROPRIETARY, PHI)),
    (
        "result_value",
        "lis.lab_results",
        "clinical_measure_in_clinical_table",
        (Tier.PROPRIETARY, PHI),
    ),
    (
        "frequency",
        "pharmacy.prescriptions",
        "clinical_measure_in_clinical_table",
        (Tier.PROPRIETARY, PHI),
    ),
    (
        "visit_reason_text",
        "clinic.appointments",
        "clinical_reason_in_clinical_table",
        (Tier.PROPRIETARY, PHI),
    ),
    ("notes", "ehr.encounters", "clinical_reason_in_clinical_table", (Tier.PROPRIETARY, PHI)),
    ("member_id", "claims.medical_claims", "health_plan_member", (Tier.PROPRIETARY, PHI)),
    (
        "tax_code",
        "hr.payroll_lines",
        "pay_detail_in_payroll_table",
        (Tier.PROPRIETARY, {"PII", "FINANCIAL"}),
    ),
    ("population", "ref.countries", "reference_table", (Tier.PUBLIC, set())),
    ("date_key", "warehouse.dim_date", "reference_table", (Tier.PUBLIC, set())),
    ("station_id", "opendata.weather_stations", "reference_table", (Tier.PUBLIC, set())),
]
UNRELATED_DATASET = "shop.orders"


@pytest.mark.parametrize(("column", "dataset", "rule", "expected"), IN_CONTEXT)
def test_dataset_context_rules_fire_only_in_their_datasets(
    clf: HeuristicClassifier, column: str, dataset: str, rule: str, expected: tuple[Tier, set]
):
    inside = clf.classify_column(column, dataset=dataset)
    assert rule in sources(inside)
    assert (inside.tier, set(inside.tags)) == expected
    assert inside.confidence >= 0.9
    assert rule not in sources(clf.classify_column(column, dataset=UNRELATED_DATASET))
    assert rule not in sources(clf.classify_column(column))


def test_clinical_table_keys_and_times_stay_internal(clf: HeuristicClassifier):
    """Only the health content of a clinical table is PHI: its record keys, timestamps and the
    key of an order for a drug are ordinary business columns."""
    for column in ("encounter_id", "medication_order_id", "ordered_at", "prescriber_id"):
        result = clf.classify_column(column, dataset="ehr.medications")
        assert result.tier is Tier.INTERNAL, column
        assert not result.tags, column


def test_reference_table_publishes_its_figures_but_not_personal_columns(
    clf: HeuristicClassifier,
):
    daily_max = clf.classify_column("temp_max_c", dataset="opendata.weather_daily")
    assert (daily_max.tier, daily_max.tags) == (Tier.PUBLIC, frozenset())
    assert "neutralised by reference_table" in daily_max.reasoning
    contact = clf.classify_column("contact_email", dataset="ref.suppliers")
    assert contact.tier is Tier.PROPRIETARY
    assert {"PII", "GDPR"} <= contact.tags


@pytest.mark.parametrize(
    ("name", "tier", "tags"),
    [
        ("customer_id", Tier.INTERNAL, set()),
        ("AccountId", Tier.INTERNAL, set()),
        ("email", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("date_of_birth", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("dob", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("birth_date", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("ssn", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("tax_id", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("passport_number", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("card_number", Tier.PROPRIETARY, {"PII", "PCI", "FINANCIAL"}),
        ("account_number", Tier.PROPRIETARY, {"PII", "FINANCIAL"}),
        ("iban", Tier.PROPRIETARY, {"PII", "FINANCIAL"}),
        ("patient_id", Tier.PROPRIETARY, {"PII", "PHI", "GDPR_SPECIAL_CATEGORY"}),
        ("country_code", Tier.PUBLIC, set()),
        ("currency_code", Tier.PUBLIC, set()),
        ("api_key_id", Tier.INTERNAL, set()),
        ("default_shipping_address_id", Tier.INTERNAL, set()),
        ("HasOptedOutOfEmail", Tier.INTERNAL, set()),
    ],
)
def test_specific_rules_keep_priority_over_generic_shapes(
    clf: HeuristicClassifier, name: str, tier: Tier, tags: set[str]
):
    """Ends in id/number/date/code, yet the specific meaning wins - and L1 is sure of it."""
    result = clf.classify_column(name)
    assert (result.tier, set(result.tags)) == (tier, tags)
    assert result.confidence >= 0.9


def test_a_boolean_column_with_an_unknown_name_is_an_internal_flag(clf: HeuristicClassifier):
    assert clf.classify_column("zorblat", data_type="boolean").tier is Tier.INTERNAL
    assert clf.classify_column("zorblat").tier is Tier.PUBLIC
    # a flag about special-category data is still special-category data
    assert clf.classify_column("union_member", data_type="boolean").tier is Tier.PROPRIETARY


@pytest.mark.parametrize(
    ("name", "tier", "tags"),
    [
        ("email", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("ssn", Tier.PROPRIETARY, {"PII", "GDPR"}),
        ("credit_card_number", Tier.PROPRIETARY, {"PCI", "FINANCIAL"}),
        ("diagnosis_code", Tier.PROPRIETARY, {"PHI", "GDPR_SPECIAL_CATEGORY"}),
        ("api_key", Tier.PROPRIETARY, {"CREDENTIALS"}),
        ("ethnicity", Tier.PROPRIETARY, {"GDPR_SPECIAL_CATEGORY"}),
        ("salary", Tier.PROPRIETARY, {"FINANCIAL", "PII"}),
        ("revenue", Tier.INTERNAL, {"FINANCIAL"}),
        ("customer_id", Tier.INTERNAL, set()),
        ("country_code", Tier.PUBLIC, set()),
        ("currency", Tier.PUBLIC, set()),
    ],
)
def test_rule_families_give_their_tier_and_tags(
    clf: HeuristicClassifier, name: str, tier: Tier, tags: set[str]
):
    result = clf.classify_column(name)
    assert result.tier is tier
    assert tags <= result.tags
    assert result.layer is Layer.HEURISTIC


@pytest.mark.parametrize(
    "name",
    [
        "customerEmail",
        "cust_email_addr",
        "E-Mail",
        "EMAIL_ADDRESS",
        "emailAddress",
        "e.mail",
        "email",
        "Email",
        "e_mail",
        "EMail",
        "customer-email",
        "user email",
        "useremail",
        "emails",
        "primaryEmail2",
    ],
)
def test_separator_and_case_variants_hit_the_email_rule(clf: HeuristicClassifier, name: str):
    result = clf.classify_column(name)
    assert "email" in sources(result)
    assert result.tier is Tier.PROPRIETARY
    assert result.confidence >= 0.9


def test_normaliser_splits_case_separators_digits_and_expands_abbreviations(
    clf: HeuristicClassifier,
):
    tokens = clf.normalizer.tokens
    assert tokens("cust_email_addr") == ("customer", "email", "address")
    assert tokens("customerEmail") == ("customer", "email")
    assert tokens("IPAddress") == ("ip", "address")
    assert tokens("address_line2") == ("address", "line", "2")
    assert tokens("dob") == ("date", "of", "birth")
    assert tokens("acct_bal") == ("account", "balance")
    assert tokens("tel") == ("telephone",)
    assert tokens("phone_no") == ("phone", "number")
    assert tokens("txn_amt") == ("transaction", "amount")
    assert tokens("countries") == ("country",)
    assert tokens("useremail") == ("user", "email")
    assert tokens("billingaddress") == ("billing", "address")


def test_compound_words_split_only_into_what_they_mean(clf: HeuristicClassifier):
    """Run-together names split into known words (createdate), but compounds the vocabulary
    lists stay whole: a drugstore is not a drug, a database not personal data."""
    tokens = clf.normalizer.tokens
    assert tokens("createdate") == ("create", "date")
    assert tokens("orderdate") == ("order", "date")
    assert tokens("drugstore") == ("drugstore",)
    assert tokens("database_name") == ("database", "name")
    assert "health_data" not in sources(clf.classify_column("drugstore_name"))


def test_normaliser_does_not_split_ordinary_words_into_short_sensitive_ones():
    normalizer = NameNormalizer({}, ["post", "pass", "age", "email", "mess"])
    for word in ("postage", "passage", "message"):
        assert normalizer.tokens(word) == (word,)


def test_plural_does_not_reduce_to_an_abbreviation(clf: HeuristicClassifier):
    # "sal" abbreviates salary; "sales" must not become "salary"
    assert clf.normalizer.tokens("sales") == ("sales",)
    assert "compensation" not in sources(clf.classify_column("sales"))


@pytest.mark.parametrize(
    "name",
    [
        "email_sha256",
        "hashed_email",
        "masked_phone",
        "ssn_hash",
        "phone_md5",
        "pseudonym",
        "anonymized_address",
        "tokenized_card_number",
        "card_last_4",
        "emailHash",
        "redacted_name",
    ],
)
def test_hashed_and_masked_columns_are_internal_anonymized_not_pii(
    clf: HeuristicClassifier, name: str
):
    result = clf.classify_column(name)
    assert result.tier is Tier.INTERNAL
    assert "ANONYMIZED" in result.tags
    assert not result.tags & {"PII", "PCI", "CONTACT", "NATIONAL_ID", "GDPR"}
    assert "anonymized_value" in sources(result)


def test_neutralised_match_stays_visible_in_the_evidence(clf: HeuristicClassifier):
    result = clf.classify_column("email_sha256")
    by_source = {e.source: e for e in result.evidence}
    assert set(by_source) == {"email", "anonymized_value"}
    assert "neutralised by anonymized_value" in by_source["email"].detail
    assert "PII" in by_source["email"].detail
    assert "email neutralised by anonymized_value" in result.reasoning


@pytest.mark.parametrize(
    "name", ["password_hash", "password_digest", "hashed_pin", "masked_api_key"]
)
def test_hashed_secret_stays_a_secret_not_anonymized_data(clf: HeuristicClassifier, name: str):
    """A password hash can be attacked offline: it is a credential verifier, not data whose
    person was hidden, so it keeps CREDENTIALS and does not claim ANONYMIZED."""
    result = clf.classify_column(name)
    assert result.tier is Tier.PROPRIETARY
    assert "CREDENTIALS" in result.tags
    assert "ANONYMIZED" not in result.tags


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("customer_count", set()),
        ("avg_amount", {"FINANCIAL"}),
        ("total_revenue", {"FINANCIAL"}),
        ("avg_salary", {"FINANCIAL"}),
        ("sum_balance", {"FINANCIAL"}),
        ("patient_count", set()),
        ("number_of_customers", set()),
        ("distinct_emails", set()),
        ("max_age", set()),
        ("cnt_users", set()),
        ("headcount", set()),
        ("churn_rate", set()),
        ("orders_last_90d", set()),
        ("spend_past_4_weeks", {"FINANCIAL"}),
    ],
)
def test_aggregates_are_not_individual_level_pii(
    clf: HeuristicClassifier, name: str, kept: set[str]
):
    result = clf.classify_column(name)
    assert result.tier is Tier.INTERNAL
    assert "AGGREGATED" in result.tags
    assert kept <= result.tags
    assert not result.tags & {"PII", "PHI", "CONTACT", "EMAIL", "IDENTIFIER"}


@pytest.mark.parametrize(
    ("dataset", "rule", "tier"),
    [
        ("customers", "dataset_people", Tier.PROPRIETARY),
        ("analytics.crm.contacts", "dataset_people", Tier.PROPRIETARY),
        ("clinic.patients", "dataset_health", Tier.PROPRIETARY),
        ("hr.payroll", "dataset_payroll", Tier.PROPRIETARY),
        ("platform.api_keys", "dataset_secrets", Tier.PROPRIETARY),
        ("sales.orders", "dataset_finance", Tier.INTERNAL),
        ("reference/countries", "dataset_reference", Tier.PUBLIC),
        (DatasetRef("s3://lake", "/data/public/holidays.csv"), "dataset_public_path", Tier.PUBLIC),
        (DatasetRef("file", "exports/open-data/stations.csv"), "dataset_public_path", Tier.PUBLIC),
    ],
)
def test_dataset_name_and_path_rules(
    clf: HeuristicClassifier, dataset: str | DatasetRef, rule: str, tier: Tier
):
    result = clf.classify_dataset_name(dataset)
    assert rule in sources(result)
    assert result.tier is tier


def test_postgres_public_schema_is_not_a_public_path(clf: HeuristicClassifier):
    result = clf.classify_dataset_name(DatasetRef("postgres://db:5432", "shop.public.customers"))
    assert "dataset_public_path" not in sources(result)
    assert result.tier is Tier.PROPRIETARY


def test_summary_dataset_neutralises_the_people_rule(clf: HeuristicClassifier):
    result = clf.classify_dataset_name("daily_user_stats")
    assert result.tier is Tier.INTERNAL
    assert "AGGREGATED" in result.tags and "PII" not in result.tags


def test_dataset_is_the_max_of_its_name_and_columns(clf: HeuristicClassifier):
    public_path = DatasetRef("s3://lake", "/public/export.csv")
    result = clf.classify_dataset(public_path, ["country_code", "customer_email", "order_id"])
    assert result.tier is Tier.PROPRIETARY  # a PII column beats a public path
    assert {"PII", "GDPR"} <= result.tags
    targets = {(e.source, e.target) for e in result.evidence}
    assert ("email", "customer_email") in targets
    assert ("dataset_public_path", "s3://lake::/public/export.csv") in targets
    assert "customer_email" in result.reasoning


def test_dataset_accepts_ready_column_classifications(clf: HeuristicClassifier):
    columns = {"x": clf.classify_column("salary"), "y": clf.classify_column("created_at")}
    result = clf.classify_dataset("warehouse.facts", columns)
    assert result.tier is Tier.PROPRIETARY
    assert "FINANCIAL" in result.tags


def test_dataset_with_nothing_matched_is_low_confidence_public(clf: HeuristicClassifier):
    result = clf.classify_dataset("warehouse.zorblats", ["zorblat", "quux_7"])
    assert result.tier is Tier.PUBLIC
    assert result.confidence == pytest.approx(0.3)
    assert NO_MATCH_REASONING in result.reasoning


def test_bare_name_column_is_a_person_name_only_in_a_people_dataset(clf: HeuristicClassifier):
    assert clf.classify_column("name").tier is Tier.PUBLIC
    assert clf.classify_column("name", dataset="warehouse.products").tier is Tier.PUBLIC
    in_customers = clf.classify_column("name", dataset=DatasetRef("pg", "crm.customers"))
    assert in_customers.tier is Tier.PROPRIETARY
    assert "person_name_in_people_dataset" in sources(in_customers)
    assert clf.classify_column("name", dataset="pg::crm.customers").tier is Tier.PROPRIETARY


def test_data_type_alone_can_match(clf: HeuristicClassifier):
    result = clf.classify_column("origin", data_type="INET")
    assert "online_identifier_ip" in sources(result)
    detail = next(e.detail for e in result.evidence if e.source == "online_identifier_ip")
    assert "data type 'inet'" in detail
    assert clf.classify_column("shape", data_type="geometry(Point,4326)").tier is Tier.PROPRIETARY


def test_evidence_names_rule_column_and_match(clf: HeuristicClassifier):
    result = clf.classify_column("cust_email_addr")
    (evidence,) = result.evidence
    assert evidence.layer is Layer.HEURISTIC
    assert evidence.source == "email"
    assert evidence.target == "cust_email_addr"
    assert "'email'" in evidence.detail
    assert evidence.confidence == pytest.approx(0.95)
    assert result.confidence == pytest.approx(0.95)
    assert "email" in result.reasoning


def test_several_rules_union_tags_max_tier_and_strongest_confidence(clf: HeuristicClassifier):
    result = clf.classify_column("prescription_email")
    assert sources(result) == {"email", "health_data"}
    assert {"PII", "PHI"} <= result.tags
    assert result.confidence == pytest.approx(0.95)  # email 0.95 beats health_data 0.9
    assert {e.target for e in result.evidence} == {"prescription_email"}


def test_public_signal_never_lowers_a_sensitive_one(clf: HeuristicClassifier):
    result = clf.classify_column("country_of_birth")
    assert result.tier is Tier.PROPRIETARY
    assert {"PII"} <= result.tags
    assert {e.source for e in result.evidence} == {"birth_date_age", "country_reference"}


def test_no_match_is_low_confidence_public_for_the_next_layer(clf: HeuristicClassifier):
    result = clf.classify_column("zorblat")
    assert result == Classification(
        Tier.PUBLIC, frozenset(), 0.3, Layer.HEURISTIC, (), NO_MATCH_REASONING
    )


def test_name_results_are_cached(clf: HeuristicClassifier):
    fresh = HeuristicClassifier.from_file()
    first = fresh.classify_column("shipping_address")
    second = fresh.classify_column("shipping_address")
    assert first is second
    info = fresh.cache_info()["names"]
    assert (info.hits, info.misses) == (1, 1)
    fresh.clear_caches()
    assert fresh.cache_info()["names"].currsize == 0


def test_classify_columns_keeps_order(clf: HeuristicClassifier):
    results = clf.classify_columns(["order_id", "email", "origin"], data_types={"origin": "inet"})
    assert [r.tier for r in results] == [Tier.INTERNAL, Tier.PROPRIETARY, Tier.PROPRIETARY]


def test_every_bundled_rule_is_reachable(clf: HeuristicClassifier):
    """Each rule of the bundled file matches at least one name in this module or a dataset."""
    names = {n for positives, _ in FAMILIES.values() for n in positives}
    names |= {"email_sha256", "customer_count", "standard_uom", "hs_code", "language"}
    matched = set()
    for name in names:
        matched |= sources(clf.classify_column(name))
        matched |= sources(clf.classify_column("name", dataset=name))
    for column, dataset, _, _ in IN_CONTEXT:
        matched |= sources(clf.classify_column(column, dataset=dataset))
    for dataset in (
        "customers",
        "patients",
        "payroll",
        "secrets",
        "orders",
        "reference/x",
        "/public/x",
        "user_stats",
    ):
        matched |= sources(clf.classify_dataset_name(dataset))
    rule_ids = {r.id for r in load_rules(DEFAULT_RULES_FILE).rules}
    assert rule_ids - matched == set()


def test_very_long_run_together_words_are_left_whole(clf: HeuristicClassifier):
    """Segmentation is bounded so a hostile 10,000-character name costs linear time."""
    assert clf.normalizer.tokens("useremail") == ("user", "email")
    assert clf.normalizer.tokens("email" * 20) == ("email" * 20,)
    assert clf.classify_column("x" * 10_000).tier is Tier.PUBLIC
