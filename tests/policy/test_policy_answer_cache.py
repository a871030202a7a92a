"""The embedded engine's answer cache (VM answer text → validated results): a hit returns what
decoding the text would, sampling against the interpreter still happens on hits, failures are
never cached, edits to the bundle show up at once, and the cache stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from policy_helpers import scenario

from lacuna_orchestration.errors import PolicyError
from lacuna_orchestration.model import DatasetRef, Tier
from lacuna_orchestration.policy.engine import results_from_document
from lacuna_orchestration.policy.rego import EmbeddedRegoEngine, _AnswerCache

_GOVERNED = DatasetRef("file", "/governed/workspace/export.csv")
_ENTRY = '{"package": "p", "metadata": {"id": "p", "title": "", "version": "1", "steward": ""}, '


def _tiny_bundle(root: Path, decisions_rule: str) -> Path:
    root.mkdir()
    (root / "lacuna.rego").write_text("package lacuna\n\n" + decisions_rule, encoding="utf-8")
    return root


def _docs() -> list[dict[str, object]]:
    return [
        scenario()[0],
        scenario(tags=("PII", "GDPR"), destination=_GOVERNED, purpose="analytics")[0],
        scenario("read", tier=Tier.PUBLIC, tags=(), destination=None)[0],
        scenario(environment="development", purpose="marketing", domain="marketing")[0],
    ]


def test_cached_answers_equal_the_interpreters(policy_dir: Path) -> None:
    vm = EmbeddedRegoEngine(policy_dir, mode="vm", reload_interval_s=None, shadow_every=0)
    reference = EmbeddedRegoEngine(policy_dir, mode="interpreter", reload_interval_s=None)
    distinct = set()
    for doc in _docs():
        first = vm.evaluate(doc)  # decoded and stored
        again = vm.evaluate(doc)  # served from the cache
        assert first == again == reference.evaluate(doc)
        assert again is not first  # callers get a list of their own
        distinct.add(tuple(first))
    assert len(vm._answers) == len(distinct) > 1  # one entry per distinct answer


def test_a_cached_answer_is_still_sampled_against_the_interpreter(tmp_path: Path) -> None:
    # A complete-rule conflict the VM turns into a silent allow: the first evaluation is not
    # sampled and stores the VM's answer; the second is sampled and must still catch it.
    root = _tiny_bundle(
        tmp_path / "conflict",
        "x := 1\n\nx := 2 if input.a\n\n"
        'deny contains "no" if { input.a; x }\n\n'
        f'decisions := [{_ENTRY}"decision": {{"allow": count(deny) == 0, "reasons": [], '
        '"alternatives": []}}]\n',
    )
    engine = EmbeddedRegoEngine(root, reload_interval_s=None, shadow_every=2)
    assert [r.allow for r in engine.evaluate({"a": True})] == [True]
    assert len(engine._answers) == 1
    with pytest.raises(PolicyError, match="conflict"):
        engine.evaluate({"a": True})
    assert engine.mode == "interpreter"


def test_malformed_answers_are_never_cached(tmp_path: Path) -> None:
    root = _tiny_bundle(tmp_path / "malformed", 'decisions := [{"package": "p"}]\n')
    engine = EmbeddedRegoEngine(root, reload_interval_s=None, shadow_every=0)
    for _ in range(2):
        with pytest.raises(PolicyError, match="malformed policy answer"):
            engine.evaluate({})
    assert len(engine._answers) == 0
    # The raw document is still available to callers that want it unvalidated.
    assert engine.evaluate_document({}) == [{"package": "p"}]


def test_an_edited_policy_answers_at_once_despite_the_cache(bundle_copy: Path) -> None:
    engine = EmbeddedRegoEngine(bundle_copy, reload_interval_s=None, shadow_every=0)
    doc, _ = scenario()
    assert engine.evaluate(doc)[0].reasons == engine.evaluate(doc)[0].reasons  # now cached
    policy = bundle_copy / "export_governance.rego"
    text = policy.read_text(encoding="utf-8")
    policy.write_text(
        text.replace("Cannot export %s data to unmanaged", "Do not export %s data to unmanaged"),
        encoding="utf-8",
    )
    st = policy.stat()
    os.utime(policy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    engine.reload()
    assert engine.evaluate(doc)[0].reasons[0].startswith("Do not export PII data")


def test_the_cache_is_bounded_and_keeps_what_it_validated() -> None:
    cache = _AnswerCache(limit=2)
    documents = [
        [
            {
                "package": f"p{i}",
                "metadata": {"id": f"p{i}", "title": "", "version": "1", "steward": ""},
                "decision": {"allow": i % 2 == 0, "reasons": [f"r{i}"], "alternatives": []},
            }
        ]
        for i in range(3)
    ]
    for i, document in enumerate(documents):
        stored = cache.remember(f"text{i}", document)
        assert list(stored) == results_from_document(document)
        assert cache.get(f"text{i}") is stored
        assert len(cache) <= 2
    assert cache.get("text0") is None  # cleared when full
    with pytest.raises(PolicyError, match="not a boolean"):
        cache.remember(
            "bad",
            [{**documents[0][0], "decision": {"allow": 1, "reasons": [], "alternatives": []}}],
        )
    assert cache.get("bad") is None
