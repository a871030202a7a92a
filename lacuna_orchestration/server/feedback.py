"""Steward feedback on decisions: was a denial right? (The false-positive rate's input.)

One verdict per decision and tenant; a later verdict replaces the earlier one (the audit chain
keeps both). Stored through the tenant governor's engine, so row-level security applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError

from lacuna_orchestration.errors import StoreError
from lacuna_orchestration.model import format_timestamp, utcnow
from lacuna_orchestration.server.tables import feedback_table

__all__ = ["Feedback", "FeedbackStore"]


@dataclass(frozen=True, slots=True)
class Feedback:
    decision_id: str
    verdict: str
    steward: str
    note: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "verdict": self.verdict,
                "steward": self.steward, "note": self.note, "created_at": self.created_at}


class FeedbackStore:
    def __init__(self, engine: Engine, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant

    def put(self, decision_id: str, verdict: str, steward: str, note: str) -> Feedback:
        item = Feedback(decision_id, verdict, steward, note, format_timestamp(utcnow()))
        t = feedback_table
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.tenant == self.tenant,
                                             t.c.decision_id == decision_id))
                conn.execute(t.insert().values(tenant=self.tenant, **item.to_dict()))
        except SQLAlchemyError as err:
            reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
            raise StoreError(f"cannot store feedback: {reason}") from None
        return item

    def for_decisions(self, decision_ids: Iterable[str] | None = None) -> dict[str, Feedback]:
        t = feedback_table
        query = select(t).where(t.c.tenant == self.tenant)
        if decision_ids is not None:
            query = query.where(t.c.decision_id.in_(list(decision_ids)))
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except SQLAlchemyError as err:
            reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
            raise StoreError(f"cannot read feedback: {reason}") from None
        return {r.decision_id: Feedback(r.decision_id, r.verdict, r.steward, r.note,
                                        r.created_at) for r in rows}
