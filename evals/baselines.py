"""Baseline retrievers over the same raw turns and the same embedder: BM25, dense only, LangGraph InMemoryStore,
mem0.

Each baseline indexes documents given as `(id, text)` pairs (one conversation's turns, text only, as a plain RAG
over the transcript would) and answers `retrieve(query, k) -> [id, ...]`. Nothing here knows a dataset, so the
LoCoMo and LongMemEval evals both use it (and import it; it imports neither).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from hippograph.stores.embedders import embed_array, embed_query_vector

_TOKEN = re.compile(r"\w+", re.UNICODE)

Doc = tuple[str, str]
"""(id, text) of one indexed turn."""


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class CachedEmbeddings(Embeddings):
    """Memoises document vectors by text, so every system in one run embeds each turn once (same vectors)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def embed_array(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            vectors = embed_array(self.inner, todo)
            with self._lock:
                self._cache.update(zip(todo, vectors, strict=True))
        with self._lock:
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return embed_query_vector(self.inner, text)


class BM25Baseline:
    """rank-bm25's BM25Okapi over raw turn text, `\\w+` lower-cased tokens (the reference setup)."""

    name = "bm25"

    def __init__(self, docs: Sequence[Doc]) -> None:
        from rank_bm25 import BM25Okapi

        self.ids = [d for d, _ in docs]
        self.index = BM25Okapi([tokenize(text) or ["_"] for _, text in docs])

    def retrieve(self, query: str, k: int) -> list[str]:
        scores = self.index.get_scores(tokenize(query))
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.ids[i] for i in order]


class DenseBaseline:
    """Exact cosine over raw turn embeddings (the same MiniLM model as hippograph)."""

    name = "dense"

    def __init__(self, docs: Sequence[Doc], embeddings: Embeddings) -> None:
        self.ids = [d for d, _ in docs]
        self.embeddings = embeddings
        self.matrix = embed_array(embeddings, [text for _, text in docs])

    def retrieve(self, query: str, k: int) -> list[str]:
        q = np.asarray(self.embeddings.embed_query(query), dtype=np.float32)
        scores = self.matrix @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.ids[i] for i in order]


class InMemoryStoreBaseline:
    """LangGraph's `InMemoryStore` with its semantic index over the raw turn text."""

    name = "langgraph_inmemory"

    def __init__(self, docs: Sequence[Doc], embeddings: Embeddings, *, namespace: str = "locomo") -> None:
        from langgraph.store.memory import InMemoryStore

        dims = len(embeddings.embed_query("dimension probe"))
        self.store = InMemoryStore(index={"embed": embeddings, "dims": dims, "fields": ["text"]})
        self.namespace = (namespace,)
        for doc_id, text in docs:
            self.store.put(self.namespace, doc_id, {"text": text})

    def retrieve(self, query: str, k: int) -> list[str]:
        return [item.key for item in self.store.search(self.namespace, query=query, limit=k)]


class Mem0Baseline:
    """mem0's open-source `Memory` as its users run it without an LLM (`infer=False`): local Qdrant, the same
    MiniLM model through mem0's LangChain embedder, one `add` per turn, `search` with no score threshold.

    An optional peer (`pip install -e ".[peers]"`); mem0 logs that its BM25 keyword search is disabled, since that
    needs fastembed and a model fetched from the Hugging Face hub."""

    name = "mem0"

    def __init__(self, docs: Sequence[Doc], embeddings: Embeddings, *, namespace: str, work_dir: str) -> None:
        import os

        os.environ.setdefault("MEM0_TELEMETRY", "False")  # no phoning home from an offline eval
        from langchain_core.language_models.fake_chat_models import FakeListChatModel
        from mem0 import Memory

        self.user = re.sub(r"[^A-Za-z0-9_-]", "-", namespace)
        self.memory = Memory.from_config({
            "vector_store": {"provider": "qdrant", "config": {
                "collection_name": self.user, "path": f"{work_dir}/qdrant-{self.user}", "embedding_model_dims":
                    len(embeddings.embed_query("dimension probe")), "on_disk": False}},
            "embedder": {"provider": "langchain", "config": {"model": embeddings}},
            # infer=False never calls the LLM; mem0 still builds one at start-up, so give it one that cannot call out
            "llm": {"provider": "langchain", "config": {"model": FakeListChatModel(responses=["{}"])}},
            "history_db_path": f"{work_dir}/mem0-history-{self.user}.db",
        })
        for doc_id, text in docs:
            self.memory.add([{"role": "user", "content": text}], user_id=self.user, metadata={"dia_id": doc_id},
                            infer=False)

    def retrieve(self, query: str, k: int) -> list[str]:
        found = self.memory.search(query, filters={"user_id": self.user}, top_k=k, threshold=0.0)
        return [hit["metadata"]["dia_id"] for hit in found["results"]]
