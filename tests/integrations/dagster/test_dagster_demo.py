"""`run_demo()` — what `make demo` runs for Dagster — tells the whole story and says so."""

from dagster_helpers import demo


def test_demo_blocks_the_export_then_passes_it_under_an_exception(tmp_path):
    lines: list[str] = []
    outcome = demo.run_demo(tmp_path / "out", echo=lines.append)
    assert outcome.tiers["customer_sales"].startswith("PROPRIETARY")
    assert outcome.tiers["regional_summary"].startswith("INTERNAL")
    assert "DERIVED_FROM_PII" in outcome.tiers["regional_summary"]
    assert "Cannot export PII data to unmanaged location" in outcome.denial
    assert not outcome.written_before_exception
    assert outcome.exception_id.startswith("EXC-")
    assert outcome.allowed_under == outcome.exception_id
    assert outcome.written_after_exception
    assert outcome.audit_ok
    text = "\n".join(lines)
    assert "stopped by the gate" in text and f"ALLOW (exception {outcome.exception_id})" in text
