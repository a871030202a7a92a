"""The bundled sentence-transformer (all-MiniLM-L6-v2) run with numpy alone.

The embedding layer needs one thing from the model: unit vectors for short texts (column
names, descriptions). sentence-transformers gets them through torch, whose import alone takes
seconds and hundreds of MB of RSS — more than the whole governor. The model is small (a
6-layer, 384-wide BERT, 22.7 M parameters), so its forward pass is a few dozen matrix products
that numpy's BLAS does at the same speed: this module loads the same ``model.safetensors`` and
``tokenizer.json`` (Rust ``tokenizers``), runs the same computation — embeddings, six encoder
layers with exact (erf) GELU, mean pooling over the attention mask, L2 normalisation — and
returns the same vectors (tests hold it to sentence-transformers' output at 1e-5).

Only BERT-architecture sentence-transformers with mean pooling and a Normalize module are
accepted (``check_supported``); anything else goes through :class:`SentenceTransformerEncoder`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lacuna_orchestration.errors import ClassificationError

__all__ = ["NumpyMiniLMEncoder", "check_supported"]

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def check_supported(folder: Path) -> None:
    """Raise ``ClassificationError`` naming what does not fit the numpy runner."""
    try:
        config = json.loads((folder / "config.json").read_text())
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError) as err:
        raise ClassificationError(f"{folder}: not a sentence-transformers model folder ({err})") \
            from None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if config.get("model_type") != "bert" or kinds[:2] != ["Transformer", "Pooling"]:
        raise ClassificationError(f"{folder}: the numpy runner handles BERT + pooling models only")
    pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
        pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                 "pooling_mode_mean_sqrt_len_tokens")
    ):
        raise ClassificationError(f"{folder}: the numpy runner handles mean pooling only")
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type",
                                                        "absolute") != "absolute":
        raise ClassificationError(f"{folder}: unsupported activation or position embedding")
    if not (folder / "model.safetensors").exists() or not (folder / "tokenizer.json").exists():
        raise ClassificationError(f"{folder}: needs model.safetensors and tokenizer.json")


class _Weights:
    """The model's tensors, transposed once into the layout ``x @ W`` wants."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file

        config = json.loads((folder / "config.json").read_text())
        raw = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in raw else ""

        def t(name: str) -> np.ndarray:
            return np.ascontiguousarray(raw[prefix + name], dtype=np.float32)

        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.word = t("embeddings.word_embeddings.weight")
        self.position = t("embeddings.position_embeddings.weight")
        self.token_type = t("embeddings.token_type_embeddings.weight")[0]
        self.ln = (t("embeddings.LayerNorm.weight"), t("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv = np.concatenate([t(p + f"attention.self.{n}.weight") for n in
                                  ("query", "key", "value")]).T.copy()
            qkv_bias = np.concatenate([t(p + f"attention.self.{n}.bias") for n in
                                       ("query", "key", "value")])
            self.layers.append((
                qkv, qkv_bias,
                t(p + "attention.output.dense.weight").T.copy(), t(p + "attention.output.dense.bias"),
                (t(p + "attention.output.LayerNorm.weight"),
                 t(p + "attention.output.LayerNorm.bias")),
                t(p + "intermediate.dense.weight").T.copy(), t(p + "intermediate.dense.bias"),
                t(p + "output.dense.weight").T.copy(), t(p + "output.dense.bias"),
                (t(p + "output.LayerNorm.weight"), t(p + "output.LayerNorm.bias")),
            ))


def _layer_norm(x: np.ndarray, params: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / (var + eps) ** 0.5 * params[0] + params[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x·Φ(x) = x·(1 + erf(x/√2))/2: scipy's erf ufunc when scipy is installed
    (sentence-transformers brings it), else Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7)."""
    erf = _erf()
    return 0.5 * x * (1.0 + erf(x * np.float32(1.0 / math.sqrt(2.0))))


def _erf() -> Any:
    global _ERF
    if _ERF is None:
        try:
            from scipy.special import erf as scipy_erf
        except ImportError:
            _ERF = _erf_polynomial
        else:
            _ERF = scipy_erf
    return _ERF


_ERF: Any = None


def _erf_polynomial(x: np.ndarray) -> np.ndarray:
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                                                        + t * (-1.453152027 + t * 1.061405429))))
    erf_abs = 1.0 - poly * np.exp(-z * z)
    return np.where(x >= 0, erf_abs, -erf_abs)


class NumpyMiniLMEncoder:
    """:class:`~lacuna_orchestration.classify.embeddings.Encoder` for a local BERT
    sentence-transformer folder (default: the bundled all-MiniLM-L6-v2), without torch."""

    def __init__(self, folder: str | Path, *, name: str, batch_size: int = 64) -> None:
        self.folder = Path(folder)
        self.model_name = name
        self.batch_size = batch_size
        self.load_seconds: float | None = None
        self._state: tuple[_Weights, Any] | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model_name

    def load(self) -> tuple[_Weights, Any]:
        """Read the weights and the tokenizer once (thread-safe); later calls are free."""
        with self._lock:
            if self._state is None:
                started = time.perf_counter()
                check_supported(self.folder)
                try:
                    from tokenizers import Tokenizer
                except ImportError as err:
                    raise ClassificationError(
                        "the embedding layer needs the tokenizers package: pip install "
                        "'lacuna-orchestration[ml]'"
                    ) from err
                tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                tokenizer.enable_truncation(MAX_TOKENS)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
                self._state = (_Weights(self.folder), tokenizer)
                self.load_seconds = time.perf_counter() - started
            return self._state

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        weights, tokenizer = self.load()
        out = np.zeros((len(texts), weights.word.shape[1]), dtype=np.float32)
        # Similar lengths batch together: less padding, as sentence-transformers does.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            encoded = tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
            out[chunk] = _forward(weights, ids, mask)
        return out


def _forward(w: _Weights, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One batch through the encoder; mean-pooled, unit-length sentence vectors."""
    batch, length = ids.shape
    hidden = w.word.shape[1]
    heads, size = w.heads, hidden // w.heads
    x = w.word[ids] + w.position[:length] + w.token_type
    x = _layer_norm(x, w.ln, w.eps).reshape(batch * length, hidden)
    # Padding keys get a large negative score: exp() makes them exactly zero.
    bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
    scale = np.float32(1.0 / math.sqrt(size))
    for (qkv, qkv_b, out_w, out_b, ln1, in_w, in_b, ffn_w, ffn_b, ln2) in w.layers:
        q, k, v = np.split((x @ qkv + qkv_b).reshape(batch, length, 3, heads, size), 3, axis=2)
        q = q[:, :, 0].transpose(0, 2, 1, 3)
        k = k[:, :, 0].transpose(0, 2, 3, 1)
        v = v[:, :, 0].transpose(0, 2, 1, 3)
        scores = (q @ k) * scale + bias
        scores -= scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        x = _layer_norm(context @ out_w + out_b + x, ln1, w.eps)
        x = _layer_norm(_gelu(x @ in_w + in_b) @ ffn_w + ffn_b + x, ln2, w.eps)
    tokens = x.reshape(batch, length, hidden) * mask[:, :, None]
    pooled = tokens.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
