"""The numpy runner of the bundled sentence-transformer gives sentence-transformers' vectors,
without importing torch; the encoder factory picks it only for models it can run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lacuna_orchestration.classify.embeddings import (
    EmbeddingClassifier,
    SentenceTransformerEncoder,
    make_encoder,
)
from lacuna_orchestration.classify.minilm import NumpyMiniLMEncoder, check_supported
from lacuna_orchestration.errors import ClassificationError
from lacuna_orchestration.settings import Settings

pytestmark = pytest.mark.slow  # loads the model through torch once, for the reference vectors

TEXTS = [
    "customer email address",
    "id",
    "x",
    "the patient's ICD-10 diagnosis code recorded at the visit (varchar) in clinic_visits",
    "Total revenue per country per month, aggregated for the monthly business review; "
    "excludes refunds and test orders. " * 12,  # long: beyond the 256-token cut
    "naïve café — Ünïcode, 東京, emoji 🚀",
    "",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformerEncoder().encode(TEXTS)


def test_numpy_vectors_equal_sentence_transformers(reference: np.ndarray) -> None:
    encoder = make_encoder(None, "auto")
    assert isinstance(encoder, NumpyMiniLMEncoder)
    ours = encoder.encode(TEXTS)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # batching and order do not change a text's vector
    small = NumpyMiniLMEncoder(encoder.folder, name=encoder.name, batch_size=2)
    assert np.abs(small.encode(TEXTS[::-1])[::-1] - ours).max() < 1e-5
    assert encoder.encode([]).shape == (0, 384)


def test_the_numpy_path_never_imports_torch() -> None:
    code = (
        "import sys, json\n"
        "from lacuna_orchestration.classify.embeddings import make_encoder\n"
        "enc = make_encoder()\n"
        "v = enc.encode(['customer email address'])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'kind': type(enc).__name__,\n"
        "                  'dim': v.shape[1], 'load_s': enc.load_seconds}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["kind"] == "NumpyMiniLMEncoder" and seen["dim"] == 384
    assert seen["torch"] is False


def test_backend_choice_and_refusals(tmp_path: Path) -> None:
    assert isinstance(make_encoder(None, "sentence-transformers"), SentenceTransformerEncoder)
    assert isinstance(make_encoder(None, "numpy"), NumpyMiniLMEncoder)
    with pytest.raises(ClassificationError, match="embedding_backend"):
        make_encoder(None, "onnx")
    # a folder the numpy runner cannot run: auto falls back, numpy says why
    folder = tmp_path / "other-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]))
    with pytest.raises(ClassificationError, match="BERT"):
        check_supported(folder)
    assert isinstance(make_encoder(str(folder), "auto"), SentenceTransformerEncoder)
    with pytest.raises(ClassificationError, match="BERT"):
        make_encoder(str(folder), "numpy")
    with pytest.raises(ClassificationError, match="not a sentence-transformers model folder"):
        check_supported(tmp_path / "missing")


def test_the_layer_uses_the_configured_backend(tmp_path: Path) -> None:
    settings = Settings.load(embeddings_enabled=True, embedding_backend="numpy")
    layer = EmbeddingClassifier.from_settings(settings, cache_dir=tmp_path)
    assert isinstance(layer.encoder, NumpyMiniLMEncoder)
    with pytest.raises(Exception, match="embedding_backend"):
        Settings.load(embedding_backend="gpu-please")


def test_the_erf_approximation_gelu_uses_matches_scipy() -> None:
    from scipy.special import erf

    from lacuna_orchestration.classify.minilm import _erfc_abs

    x = np.linspace(-6, 6, 10_001, dtype=np.float32)
    z = np.abs(x)
    ours = np.copysign(1.0 - _erfc_abs(z, np.empty_like(z), np.empty_like(z)), x)
    assert np.abs(ours - erf(x)).max() < 5e-7
