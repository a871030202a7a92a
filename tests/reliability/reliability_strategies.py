"""Hypothesis strategies for hostile OpenLineage input, shared by the core property test and
the HTTP fuzzing: mutations of a valid event (any field replaced by any JSON value, or
removed), hostile text (NUL, lone surrogates, SQL, bidi overrides), and random JSON/bytes."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from hypothesis import strategies as st

from lacuna_orchestration.lineage.events import DatasetSpec, build_run_event
from lacuna_orchestration.model import DatasetRef

HOSTILE_NAMES = [
    "orders'; DROP TABLE lacuna_audit; --",
    'x" OR "1"="1',
    "Robert'); DELETE FROM lacuna_datasets WHERE ('1'='1",
    "100%_done\\%\\_",
    "back\\slash\\\\ and 'quote' and \"dq\"",
    "$1 $$ :param ?",
    "tab\tnew\nline\rcr\x01\x1f\x7f",
    "مرحبا بالعالم",  # Arabic, right to left
    "שלום\u202eevil.exe\u202c",  # Hebrew and a right-to-left override (Trojan Source)
    "zero\u200bwidth\u200djoin\ufeff",
    "e\u0301\u0301 combining",
    "📊 émoji 🧑‍💻 👩🏽‍🔬",
    "中文数据集",
    "../../etc/passwd",
    "A" * 2000,
]
"""Stored and returned verbatim."""

REFUSED_NAMES = ["nul\x00byte", "lone\ud800surrogate", "\udfffback"]
"""Refused: NUL (PostgreSQL text cannot hold it) and lone surrogates (not Unicode text)."""


def event(inputs: Sequence[DatasetSpec], outputs: Sequence[DatasetSpec], **kw: Any) -> dict:
    return build_run_event(job=("hostile", f"job-{uuid.uuid4().hex[:8]}"), inputs=list(inputs),
                           outputs=list(outputs), **kw)


HOSTILE_TEXT = st.one_of(
    st.sampled_from(HOSTILE_NAMES + REFUSED_NAMES),
    st.text(st.characters(exclude_categories=()), max_size=24),
)
JSON_LEAF = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond 64 bits too
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(HOSTILE_TEXT, children, max_size=4),
    max_leaves=8,
)
PATHS: list[tuple[Any, ...]] = [
    ("eventType",), ("eventTime",), ("producer",), ("schemaURL",), ("run",), ("run", "runId"),
    ("run", "facets"), ("run", "facets", "lacuna"), ("run", "facets", "lacuna", "operation"),
    ("run", "facets", "lacuna", "user"), ("run", "facets", "lacuna", "purpose"),
    ("job",), ("job", "namespace"), ("job", "name"), ("job", "facets"),
    ("inputs",), ("inputs", 0), ("inputs", 0, "namespace"), ("inputs", 0, "name"),
    ("inputs", 0, "facets"), ("inputs", 0, "facets", "schema"),
    ("inputs", 0, "facets", "schema", "fields"),
    ("inputs", 0, "facets", "schema", "fields", 0),
    ("inputs", 0, "facets", "schema", "fields", 0, "name"),
    ("inputs", 0, "facets", "schema", "fields", 0, "type"),
    ("inputs", 0, "facets", "schema", "fields", 0, "description"),
    ("inputs", 0, "facets", "schema", "fields", 0, "fields"),
    ("inputs", 0, "facets", "lacuna", "classification"),
    ("inputs", 0, "facets", "lacuna", "samples"),
    ("outputs",), ("outputs", 0, "name"), ("outputs", 0, "facets"),
    ("outputs", 0, "facets", "columnLineage"),
    ("outputs", 0, "facets", "columnLineage", "fields"),
    ("outputs", 0, "facets", "columnLineage", "fields", "email", "inputFields"),
    ("outputs", 0, "facets", "lacuna", "tags"), ("outputs", 0, "facets", "lacuna", "columns"),
    ("outputs", 0, "facets", "tags"), ("outputs", 0, "outputFacets"),
]  # fmt: skip


def base_event() -> dict[str, Any]:
    src = DatasetSpec(DatasetRef("crm", "customers"),
                      columns=(("email", "string", "the e-mail"), "region"), tier="INTERNAL")
    out = DatasetSpec(DatasetRef("warehouse", "out"), columns=("email",),
                      column_lineage={"email": [(src.ref, "email")]}, tags=["PII"])
    return event([src], [out], operation="join", user="ann", purpose="analytics")


def _mutate(ev: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool) -> None:
    node: Any = ev
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed the way there
    last = path[-1]
    try:
        if delete:
            del node[last]
        else:
            node[last] = value
    except (KeyError, IndexError, TypeError):
        pass


@st.composite
def hostile_events(draw: st.DrawFn) -> Any:
    """A payload for ingest: mostly a mutated valid event (as an object or JSON bytes)."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "mutated-bytes", "random"]))
    if kind == "random":
        return draw(st.one_of(JSON, st.binary(max_size=64)))
    ev = copy.deepcopy(base_event())
    for _ in range(draw(st.integers(1, 3))):
        _mutate(ev, draw(st.sampled_from(PATHS)), draw(JSON), draw(st.booleans()))
    if kind == "mutated-bytes":
        try:
            return orjson.dumps(ev)
        except orjson.JSONEncodeError:
            return ev  # not encodable as JSON text (a lone surrogate): send the object
    return ev
