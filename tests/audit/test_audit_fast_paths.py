"""The append path's shortcuts agree with the plain definitions they replace.

Appends build linked records through slot descriptors (not the frozen dataclass
``__init__``) and hand each row to the store as it is hashed; both must give exactly what
``link()`` and the dataclass give (no database needed here).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from audit_helpers import make_records

from lacuna_orchestration.audit import chain as chain_module
from lacuna_orchestration.audit.chain import (
    ROW_FIELDS,
    ChainHead,
    encode,
    link,
    place_rows,
    record_hash,
)
from lacuna_orchestration.audit.store import AUDIT_COLUMNS
from lacuna_orchestration.model import AuditRecord


def linked_rows(records: list[AuditRecord]) -> tuple[list[AuditRecord], list[tuple[Any, ...]]]:
    rows: list[tuple[Any, ...]] = []
    linked = place_rows(map(encode, records), ChainHead.genesis(), rows.append)
    return linked, rows


# -- appending ------------------------------------------------------------------------------


def test_linked_records_equal_the_dataclass_constructor() -> None:
    linked, _ = linked_rows(make_records(3))
    for record in linked:
        values = [getattr(record, f.name) for f in dataclasses.fields(AuditRecord)]
        rebuilt = AuditRecord(*values)
        assert (record, repr(record)) == (rebuilt, repr(rebuilt))
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.seq = 5  # type: ignore[misc]


def test_place_rows_hands_over_the_stored_row_of_each_record() -> None:
    records = make_records(4)
    linked, rows = linked_rows(records)
    assert linked == link(records, ChainHead.genesis())
    assert ROW_FIELDS == AUDIT_COLUMNS
    for record, row in zip(linked, rows, strict=True):
        stored = dict(zip(ROW_FIELDS, row, strict=True))
        assert stored["hash"] == record.hash == record_hash(record)
        assert stored["decision"] == chain_module.canonical_json(record.decision).decode()
        assert stored["details"] == chain_module.canonical_json(record.details).decode()
        assert {k: v for k, v in stored.items() if k not in ("decision", "details")} == {
            k: getattr(record, k) for k in ROW_FIELDS if k not in ("decision", "details")
        }
    assert [r.seq for r in linked] == [1, 2, 3, 4]


def test_linked_record_factory_falls_back_without_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        actor: str
        action: str
        resource: str
        reason: str = ""
        via: str = ""
        run_id: str = ""
        decision: Any = None
        details: Any = None
        tenant: str = "default"
        record_id: str = ""
        timestamp: str = ""
        seq: int = 0
        prev_hash: str = ""
        hash: str = ""

    monkeypatch.setattr(chain_module, "AuditRecord", Unslotted)
    assert chain_module._linked_record_factory() is Unslotted
