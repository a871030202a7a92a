"""L1 settles the ordinary columns of a warehouse by itself (issue 7: >= 85 % decided at
confidence >= 0.9) and labels them right, and the rules generalise to columns written apart
from the evaluation set they were tuned on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lacuna_orchestration.classify.heuristics import HeuristicClassifier
from lacuna_orchestration.classify.pipeline import ColumnContext
from lacuna_orchestration.model import Classification, Tier

HELD_OUT = Path(__file__).parent / "data" / "heldout_columns.yaml"
DECIDED = 0.9  # the cascade's default L1 threshold

PII = {"PII", "GDPR"}
PHI = {"PII", "PHI", "GDPR_SPECIAL_CATEGORY"}
FIN = {"FINANCIAL"}

# (dataset, column, data type, tier, tags): one slice per family of ordinary columns, plus the
# sensitive and public columns that sit next to them in the same tables
REPRESENTATIVE: list[tuple[str, str, str | None, Tier, set[str]]] = [
    # record keys and references
    ("erp.purchase_orders", "po_number", "varchar", Tier.INTERNAL, set()),
    ("erp.purchase_orders", "vendorId", "bigint", Tier.INTERNAL, set()),
    ("erp.purchase_orders", "line_no", "integer", Tier.INTERNAL, set()),
    ("wms.stock_moves", "move_uuid", "uuid", Tier.INTERNAL, set()),
    ("wms.stock_moves", "barcode", "varchar", Tier.INTERNAL, set()),
    # timestamps and periods
    ("erp.purchase_orders", "approved_at", "timestamp", Tier.INTERNAL, set()),
    ("wms.stock_moves", "MovedOn", "date", Tier.INTERNAL, set()),
    ("billing.subscriptions", "renewal_date", "date", Tier.INTERNAL, set()),
    ("billing.subscriptions", "period_start", "date", Tier.INTERNAL, set()),
    ("etl.loads", "loaded_ts", "timestamp", Tier.INTERNAL, set()),
    # flags, statuses, categories
    ("billing.subscriptions", "is_trial", "boolean", Tier.INTERNAL, set()),
    ("billing.subscriptions", "auto_renew", "boolean", Tier.INTERNAL, set()),
    ("billing.subscriptions", "plan_tier", "varchar", Tier.INTERNAL, set()),
    ("support.cases", "case_status", "varchar", Tier.INTERNAL, set()),
    ("support.cases", "severity", "varchar", Tier.INTERNAL, set()),
    ("support.cases", "resolution_code", "varchar", Tier.INTERNAL, set()),
    # quantities and machine metrics
    ("wms.stock_moves", "qty_moved", "integer", Tier.INTERNAL, set()),
    ("wms.stock_moves", "pallet_weight_kg", "numeric", Tier.INTERNAL, set()),
    ("ops.api_metrics", "p50_latency_ms", "numeric", Tier.INTERNAL, {"AGGREGATED"}),
    ("ops.api_metrics", "disk_used_gb", "numeric", Tier.INTERNAL, set()),
    ("ops.api_metrics", "requests_per_second", "numeric", Tier.INTERNAL, {"AGGREGATED"}),
    # telemetry and systems
    ("ops.api_logs", "endpoint", "varchar", Tier.INTERNAL, set()),
    ("ops.api_logs", "http_status_code", "smallint", Tier.INTERNAL, set()),
    ("ops.api_logs", "pod_name", "varchar", Tier.INTERNAL, set()),
    ("ops.api_logs", "span_id", "varchar", Tier.INTERNAL, set()),
    # organisation and catalogue
    ("hr.positions", "business_unit", "varchar", Tier.INTERNAL, set()),
    ("hr.positions", "cost_centre", "varchar", Tier.INTERNAL, set()),
    ("erp.purchase_orders", "supplier_name", "varchar", Tier.INTERNAL, set()),
    ("catalog.items", "product_category", "varchar", Tier.INTERNAL, set()),
    # money of the business, aggregates
    ("billing.subscriptions", "monthly_fee", "numeric", Tier.INTERNAL, FIN),
    ("erp.purchase_orders", "order_total", "numeric", Tier.INTERNAL, FIN),
    ("finance.pnl", "gross_margin", "numeric", Tier.INTERNAL, FIN),
    ("marts.weekly_kpis", "avg_basket_value", "numeric", Tier.INTERNAL, {"AGGREGATED", *FIN}),
    ("marts.weekly_kpis", "conversion_rate", "numeric", Tier.INTERNAL, {"AGGREGATED"}),
    ("marts.weekly_kpis", "distinct_buyers", "integer", Tier.INTERNAL, {"AGGREGATED"}),
    # people next to those columns
    ("crm.people", "work_phone", "varchar", Tier.PROPRIETARY, PII),
    ("crm.people", "familyName", "varchar", Tier.PROPRIETARY, PII),
    ("crm.people", "BirthDate", "date", Tier.PROPRIETARY, PII),
    ("crm.people", "home_zip", "varchar", Tier.PROPRIETARY, PII),
    ("crm.people", "person_id", "bigint", Tier.INTERNAL, set()),
    ("hr.staff", "nationality", "varchar", Tier.PROPRIETARY, PII),
    ("hr.staff", "gross_salary", "numeric", Tier.PROPRIETARY, {"PII", "FINANCIAL"}),
    ("hr.staff", "religion", "varchar", Tier.PROPRIETARY, {*PII, "GDPR_SPECIAL_CATEGORY"}),
    ("payments.payouts", "payee_iban", "varchar", Tier.PROPRIETARY, {"PII", "FINANCIAL"}),
    ("payments.cards", "cvv2", "varchar", Tier.PROPRIETARY, {"PII", "PCI", "FINANCIAL"}),
    ("auth.accounts", "refresh_token", "varchar", Tier.PROPRIETARY, {"CREDENTIALS"}),
    ("auth.accounts", "email_md5", "varchar", Tier.INTERNAL, {"ANONYMIZED"}),
    ("clinic.lab_results", "loinc_code", "varchar", Tier.PROPRIETARY, PHI),
    ("clinic.lab_results", "result_unit", "varchar", Tier.PROPRIETARY, PHI),
    ("clinic.lab_results", "specimen_id", "bigint", Tier.INTERNAL, set()),
    # public reference data
    ("crm.people", "country_iso2", "char(2)", Tier.PUBLIC, set()),
    ("billing.subscriptions", "currency", "char(3)", Tier.PUBLIC, set()),
    ("ref.time_zones", "utc_offset", "varchar", Tier.PUBLIC, set()),
    ("ref.country_codes", "iso_numeric", "char(3)", Tier.PUBLIC, set()),
    ("ref.country_codes", "official_name", "varchar", Tier.PUBLIC, set()),
]


@pytest.fixture(scope="module")
def clf() -> HeuristicClassifier:
    return HeuristicClassifier.from_file()


def classify(clf: HeuristicClassifier, dataset: str, column: str, data_type: str | None):
    item = ColumnContext(column, data_type=data_type, dataset_name=dataset)
    return clf.classify_many([item])[0]


def label(result: Classification) -> str:
    tags = ", ".join(sorted(result.tags))
    return f"{result.tier.name} [{tags}] at {result.confidence:.2f}"


@pytest.mark.parametrize(
    ("dataset", "column", "data_type", "tier", "tags"),
    REPRESENTATIVE,
    ids=[f"{d}.{c}" for d, c, *_ in REPRESENTATIVE],
)
def test_l1_decides_and_labels_a_representative_column(
    clf: HeuristicClassifier,
    dataset: str,
    column: str,
    data_type: str | None,
    tier: Tier,
    tags: set[str],
):
    result = classify(clf, dataset, column, data_type)
    assert result.confidence >= DECIDED, f"{column}: undecided, {label(result)}"
    assert (result.tier, set(result.tags)) == (tier, tags), f"{column}: {label(result)}"


def test_l1_generalises_to_held_out_columns(clf: HeuristicClassifier):
    """On columns written apart from the evaluation set, L1 still decides most of them, and
    what it decides it gets right; the rest go on to L2 (measured: 91 % decided, 97 % of those
    exactly right, 168 columns)."""
    rows = yaml.safe_load(HELD_OUT.read_text(encoding="utf-8"))
    assert len(rows) >= 150
    decided, wrong = 0, []
    for dataset, column, data_type, tier, tags in rows:
        result = classify(clf, dataset, column, data_type)
        if result.confidence < DECIDED:
            continue
        decided += 1
        if (result.tier, set(result.tags)) != (Tier.parse(tier), set(tags)):
            wrong.append(f"{dataset}.{column}: want {tier} {tags}, got {label(result)}")
    assert decided / len(rows) >= 0.85, f"only {decided} of {len(rows)} decided by L1"
    assert len(wrong) / decided <= 0.05, "\n".join(wrong)
