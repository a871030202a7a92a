"""The tamper-evident audit trail: a SHA-256 hash chain per tenant in an append-only table.

>>> from lacuna_orchestration.db import make_engine
>>> store = AuditStore(make_engine("sqlite:///:memory:"), tenant="acme")
>>> store.create_schema()
>>> store.append(AuditRecord("ana", "gate", "wh::orders", reason="nightly export")).seq
1
>>> verify(store).message[:31]
"audit chain 'acme' verified: 1 "

* :mod:`.chain`: canonical JSON, record hashes, linking records to a chain head;
* :mod:`.store`: the tables, triggers refusing UPDATE/DELETE, locked batch appends, reads;
* :mod:`.verify`: recompute every link, name the first broken record;
* :mod:`.batcher`: group commit for many concurrent writers.
"""

from lacuna_orchestration.audit.batcher import AuditBatcher
from lacuna_orchestration.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    canonical_json,
    link,
    record_hash,
)
from lacuna_orchestration.audit.store import AuditStore
from lacuna_orchestration.audit.verify import VerifyReport, verify
from lacuna_orchestration.model import AuditRecord

__all__ = [
    "GENESIS_HASH",
    "AuditBatcher",
    "AuditRecord",
    "AuditStore",
    "ChainHead",
    "VerifyReport",
    "canonical_json",
    "link",
    "record_hash",
    "verify",
]
