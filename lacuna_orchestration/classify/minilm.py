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
    """Layer normalisation of the last axis, in place on ``x`` (returned)."""
    x -= x.mean(-1, keepdims=True)
    scale = np.square(x).mean(-1, keepdims=True)
    scale += eps
    np.sqrt(scale, out=scale)
    x /= scale
    x *= params[0]
    x += params[1]
    return x


def _gelu(h: np.ndarray, a: np.ndarray, t: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact GELU, h·Φ(h) = h·(1 + erf(h/√2))/2, in place on ``h``; ``a``, ``t`` and ``poly``
    are scratch arrays of its shape. Fresh arrays of this size cost page faults on every call (numpy has no
    caching allocator), which made GELU with scipy's erf 40 % of an encode."""
    np.multiply(h, np.float32(1.0 / math.sqrt(2.0)), out=a)
    np.abs(a, out=a)
    _erfc_abs(a, t, poly)  # a = erfc(|h|/√2)
    # erf = sign(h)·(1 - a), so h·(1 + erf)/2 is h·(1 - a/2) for h ≥ 0 and h·a/2 below 0:
    a *= np.float32(0.5)
    np.subtract(np.float32(0.5), a, out=a)
    np.copysign(a, h, out=a)
    a += np.float32(0.5)
    h *= a
    return h


# Abramowitz–Stegun 7.1.26: erfc(z) = (a1·t + … + a5·t⁵)·exp(-z²), t = 1/(1 + p·z), z ≥ 0;
# |error| < 1.5e-7, about float32's resolution near 1.
_P = np.float32(0.3275911)
_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736,
                                   0.254829592))


def _erfc_abs(z: np.ndarray, t: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """erfc of ``z`` ≥ 0 (float32), in place on ``z``; ``t`` and ``poly`` are scratch."""
    np.multiply(z, _P, out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    np.multiply(t, _A[0], out=poly)  # Horner, highest coefficient first: t·(a1 + t·(a2 + …))
    for coefficient in _A[1:]:
        poly += coefficient
        poly *= t
    z *= poly
    return z


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
                tokenizer.no_padding()  # encode() pads each batch to its own longest text
                self._state = (_Weights(self.folder), tokenizer)
                self.load_seconds = time.perf_counter() - started
            return self._state

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        weights, tokenizer = self.load()
        out = np.zeros((len(texts), weights.word.shape[1]), dtype=np.float32)
        encoded = [e.ids for e in tokenizer.encode_batch(list(texts))]
        # Batches of similar token counts: little padding, so little wasted arithmetic.
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            length = max(len(encoded[i]) for i in chunk)
            ids = np.zeros((len(chunk), length), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(chunk), length), dtype=np.float32)
            for row, i in enumerate(chunk):
                ids[row, :len(encoded[i])] = encoded[i]
                mask[row, :len(encoded[i])] = 1.0
            out[chunk] = _forward(weights, ids, mask)
        return out


def _forward(w: _Weights, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One batch through the encoder; mean-pooled, unit-length sentence vectors.

    Every activation lives in a few arrays allocated once per batch and written with
    ``out=``: allocating them per operation (numpy's default) costs more than the
    arithmetic at these sizes."""
    batch, length = ids.shape
    n = batch * length
    hidden = w.word.shape[1]
    heads, size = w.heads, hidden // w.heads
    x = w.word[ids]
    x += w.position[:length]
    x += w.token_type
    x = _layer_norm(x, w.ln, w.eps).reshape(n, hidden)
    h = np.empty_like(x)  # x and h take turns as a layer's input and output
    qkv_out = np.empty((n, 3 * hidden), dtype=np.float32)
    inner = np.empty((n, w.layers[0][5].shape[1]), dtype=np.float32)
    scratch = (np.empty_like(inner), np.empty_like(inner), np.empty_like(inner))
    # Padding keys get a large negative score: exp() makes them exactly zero.
    bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
    scale = np.float32(1.0 / math.sqrt(size))
    for (qkv, qkv_b, out_w, out_b, ln1, in_w, in_b, ffn_w, ffn_b, ln2) in w.layers:
        np.matmul(x, qkv, out=qkv_out)
        qkv_out += qkv_b
        heads_view = qkv_out.reshape(batch, length, 3, heads, size)
        q = heads_view[:, :, 0].transpose(0, 2, 1, 3)
        k = heads_view[:, :, 1].transpose(0, 2, 3, 1)
        v = heads_view[:, :, 2].transpose(0, 2, 1, 3)
        scores = q @ k
        scores *= scale
        scores += bias
        scores -= scores.max(-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, hidden)
        np.matmul(context, out_w, out=h)
        h += out_b
        h += x
        x, h = _layer_norm(h, ln1, w.eps), x
        np.matmul(x, in_w, out=inner)
        inner += in_b
        _gelu(inner, *scratch)
        np.matmul(inner, ffn_w, out=h)
        h += ffn_b
        h += x
        x, h = _layer_norm(h, ln2, w.eps), x
    tokens = x.reshape(batch, length, hidden) * mask[:, :, None]
    pooled = tokens.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
