"""L2 with the real bundled all-MiniLM-L6-v2 (loaded once for the module): nearest-example
voting, the ``.npy`` example cache, the query LRU, offline loading, and the examples file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lacuna_orchestration.classify.embeddings import (
    DEFAULT_EXAMPLES_FILE,
    EmbeddingClassifier,
    LabelledExample,
    SentenceTransformerEncoder,
    examples_digest,
    load_examples,
    query_text,
    split_words,
)
from lacuna_orchestration.classify.heuristics import HeuristicClassifier
from lacuna_orchestration.classify.pipeline import ColumnContext
from lacuna_orchestration.errors import ClassificationError
from lacuna_orchestration.model import Layer, Tier
from lacuna_orchestration.settings import Settings

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class CountingEncoder:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, inner: SentenceTransformerEncoder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def encoder() -> SentenceTransformerEncoder:
    before = {v: os.environ.get(v) for v in OFFLINE_VARS}
    loaded = SentenceTransformerEncoder()
    loaded.load()
    assert {v: os.environ.get(v) for v in OFFLINE_VARS} == before, "environment was changed"
    return loaded


def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One example cache for the whole session: the bundled examples are embedded once."""
    path = tmp_path_factory.getbasetemp() / "lacuna-embeddings"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_cache_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def l2(encoder: SentenceTransformerEncoder, cache_dir: Path) -> EmbeddingClassifier:
    return EmbeddingClassifier(encoder=encoder, cache_dir=cache_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("item", "tier", "tags"),
    [
        (
            ColumnContext("buyer_contact", description="where we mail the receipt"),
            Tier.PROPRIETARY,
            {"PII", "GDPR"},
        ),
        (ColumnContext("weekly_active_users"), Tier.INTERNAL, {"AGGREGATED"}),
        (ColumnContext("iso_country", dataset_name="ref.countries"), Tier.PUBLIC, set()),
        (ColumnContext("webhook_secret"), Tier.PROPRIETARY, {"CREDENTIALS"}),
        (
            ColumnContext("dx_code", dataset_name="clinic.visits"),
            Tier.PROPRIETARY,
            {"PII", "PHI", "GDPR_SPECIAL_CATEGORY"},
        ),
    ],
    ids=["contact", "aggregate", "reference", "secret", "diagnosis"],
)
def test_nearest_examples_decide_tier_and_tags(
    l2: EmbeddingClassifier, item: ColumnContext, tier: Tier, tags: set[str]
):
    result = l2.classify(item)
    assert result.layer is Layer.EMBEDDING
    assert result.tier is tier
    assert result.tags == tags
    assert 0.0 < result.confidence <= 1.0
    assert len(result.evidence) == 3
    examples = {e.text for e in l2.examples}
    for evidence in result.evidence:
        assert evidence.layer is Layer.EMBEDDING
        assert evidence.source in examples
        assert evidence.target == item.target
        assert "similarity" in evidence.detail
    similarities = [e.confidence for e in result.evidence]
    assert similarities == sorted(similarities, reverse=True)


@pytest.mark.slow
def test_neighbours_explain_an_answer(l2: EmbeddingClassifier):
    near = l2.neighbours(ColumnContext("card_cvv2"), count=4)
    assert len(near) == 4
    assert [s for _, s in near] == sorted((s for _, s in near), reverse=True)
    assert near[0][0].tags == {"PII", "PCI", "FINANCIAL"}


@pytest.mark.slow
def test_unfamiliar_text_is_not_answered_confidently(l2: EmbeddingClassifier):
    familiar = l2.classify(ColumnContext("customer_email_address"))
    odd = l2.classify(ColumnContext("zq_x7", description="flurb"))
    assert familiar.confidence >= 0.8
    assert odd.confidence < 0.5


@pytest.mark.slow
def test_example_matrix_is_cached_by_model_and_examples(
    encoder: SentenceTransformerEncoder, tmp_path: Path
):
    some = load_examples()[::15]  # a slice keeps the test quick; the mechanism is the same
    first = EmbeddingClassifier(encoder=encoder, cache_dir=tmp_path, examples=some)
    first.warm_up()
    path = first.cache_path()
    assert path.is_file() and first.matrix_source == "encoded"
    assert first.digest[:16] in path.name
    counting = CountingEncoder(encoder)
    again = EmbeddingClassifier(encoder=counting, cache_dir=tmp_path, examples=some)
    again.warm_up()
    assert again.matrix_source == "cache" and counting.texts == []
    item = ColumnContext("shipping_street")
    assert again.classify(item) == first.classify(item)
    edited = first.examples[:-1]
    changed = EmbeddingClassifier(encoder=encoder, cache_dir=tmp_path, examples=edited)
    assert changed.cache_path() != path
    path.write_bytes(b"not a numpy file")  # a broken cache is encoded again, not fatal
    broken = EmbeddingClassifier(encoder=encoder, cache_dir=tmp_path, examples=some)
    broken.warm_up()
    assert broken.matrix_source == "encoded"


@pytest.mark.slow
def test_queries_are_encoded_once_in_one_batch(
    encoder: SentenceTransformerEncoder, cache_dir: Path
):
    counting = CountingEncoder(encoder)
    l2 = EmbeddingClassifier(encoder=counting, cache_dir=cache_dir)
    l2.warm_up()
    counting.texts.clear()
    items = [
        ColumnContext("order_total"),
        ColumnContext("home_phone"),
        ColumnContext("order_total"),
    ]
    l2.classify_many(items)
    assert counting.texts == ["order total", "home phone"]
    l2.classify_many(items[:2])
    assert counting.texts == ["order total", "home phone"]  # both from the LRU
    l2.clear_query_cache()
    l2.classify(items[0])
    assert counting.texts[-1] == "order total"


def test_missing_model_is_a_clear_error(tmp_path: Path):
    before = {v: os.environ.get(v) for v in OFFLINE_VARS}
    encoder = SentenceTransformerEncoder(str(tmp_path / "no-such-model"))
    with pytest.raises(ClassificationError, match="cannot load embedding model .*nothing is"):
        encoder.load()
    assert {v: os.environ.get(v) for v in OFFLINE_VARS} == before


def test_core_imports_without_loading_torch_or_openai():
    code = (
        "import sys, lacuna_orchestration.classify.embeddings, "
        "lacuna_orchestration.classify.llm; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'openai') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_from_settings_uses_the_configured_model(tmp_path: Path):
    settings = Settings.load(database_url="sqlite:///:memory:", embedding_model="/models/mine")
    l2 = EmbeddingClassifier.from_settings(settings, cache_dir=tmp_path)
    assert l2.encoder.name == "/models/mine"
    assert l2.cache_dir == tmp_path


# -- query text and examples (no model needed) -----------------------------------------------


def test_query_text_spells_out_the_column():
    normalizer = HeuristicClassifier.from_file().normalizer
    item = ColumnContext(
        "custDOB",
        description="Day the customer was born",
        dataset_name="analytics.crm_contacts",
        dataset_description="Every contact we have",
    )
    assert query_text(item, normalizer) == (
        "customer date of birth: Day the customer was born (in crm contacts)"
    )
    assert query_text(ColumnContext("userID")) == "user id"
    assert split_words("HTTPStatusCode2xx") == "http status code 2 xx"


def test_bundled_examples_cover_every_tier_and_many_groups():
    examples = load_examples()
    assert len(examples) >= 300
    assert {e.tier for e in examples} == set(Tier)
    assert {e.kind for e in examples} == {"columns", "descriptions", "datasets"}
    assert len({e.group for e in examples}) >= 20
    assert all(e.tier is Tier.PROPRIETARY for e in examples if "PII" in e.tags)


def test_digest_changes_with_any_label():
    examples = load_examples()
    relabelled = list(examples)
    first = relabelled[0]
    relabelled[0] = LabelledExample(first.text, first.kind, Tier.PUBLIC, first.tags, first.group)
    assert examples_digest(examples) == examples_digest(load_examples(DEFAULT_EXAMPLES_FILE))
    assert examples_digest(relabelled) != examples_digest(examples)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("groups: [", "not valid YAML"),
        ("version: 1", "non-empty 'groups'"),
        ("groups: [{name: a, tier: SECRET, columns: [x]}]", "unknown tier 'SECRET'"),
        ("groups: [{name: a, tier: PUBLIC}]", "has no examples"),
        ("groups: [{name: a, tier: PUBLIC, colums: [x]}]", "unknown keys colums"),
        ("groups: [{name: a, tier: PUBLIC, columns: x}]", "must be a list"),
        (
            (
                "groups: [{name: a, tier: PUBLIC, columns: [Foo_Bar]},"
                " {name: b, tier: INTERNAL, columns: [foo bar]}]"
            ),
            "'foo bar' appears twice",
        ),
    ],
)
def test_bad_examples_file_names_the_problem(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "examples.yaml"
    path.write_text(text)
    with pytest.raises(ClassificationError, match=problem):
        load_examples(path)


def test_missing_examples_file(tmp_path: Path):
    with pytest.raises(ClassificationError, match="cannot read examples file"):
        load_examples(tmp_path / "absent.yaml")


def test_bad_parameters_are_refused():
    examples = load_examples()
    encoder: Any = None
    with pytest.raises(ClassificationError, match="k must be at least 1"):
        EmbeddingClassifier(encoder=encoder, examples=examples, k=0)
    with pytest.raises(ClassificationError, match="far < near"):
        EmbeddingClassifier(encoder=encoder, examples=examples, near=0.2, far=0.5)
