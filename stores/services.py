"""The services a graph's nodes use, built once from settings: stores, embedder, chat model, outbox.

Graph factories take a `Services` (tests pass their own); `Services.from_settings()` is what `langgraph dev`,
LangServe and the CLI use, so every interface serves the same graph the tests compile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from hippograph.stores.embedders import MiniLMEmbeddings, embed_array, embedding_dimension, load_embeddings
from hippograph.stores.files import private_dir
from hippograph.stores.outbox import Outbox, SqliteOutbox
from hippograph.stores.preferences.lazy import LazyPreferenceStore
from hippograph.stores.registry import Registry
from hippograph.stores.settings import Settings, get_settings
from hippograph.stores.tree.base import TreeStore

if TYPE_CHECKING:  # annotations only: importing langchain_core's language models costs ~0.5 s of start-up
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from hippograph.stores.preferences.base import PreferenceStore


@dataclass
class Services:
    """Everything a node needs that is not in the graph state. Heavy parts are opened on first use."""

    settings: Settings
    embeddings: Embeddings
    tree: TreeStore
    registry: Registry
    outbox: Outbox
    chat_model: BaseChatModel | None = None
    _preferences: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _prefetching: list[threading.Thread] = field(default_factory=list, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Services:
        settings = settings or get_settings()
        private_dir(settings.data_dir)
        embeddings = overrides.pop("embeddings", None) or load_embeddings(settings.embedder)
        tree = overrides.pop("tree", None) or open_tree_store(settings, embedding_dimension(embeddings))
        return cls(
            settings=settings,
            embeddings=embeddings,
            tree=tree,
            registry=overrides.pop("registry", None)
            or Registry(settings.registry_path, auto_create_users=settings.auto_create_users),
            outbox=overrides.pop("outbox", None) or open_outbox(settings),
            chat_model=overrides.pop("chat_model", None) or load_chat_model(settings.chat_model),
            _preferences=overrides.pop("preferences", None),
        )

    @cached_property
    def preferences(self) -> PreferenceStore:
        """Preference memory (Milvus / Milvus Lite), opened by the first call on it, not by reading this
        attribute: Milvus Lite takes seconds to start, and graph compilation reads `services.preferences.*`."""
        return LazyPreferenceStore(self.open_preferences)

    @property
    def preferences_opened(self) -> bool:
        """Whether preference memory is open in this process (a command that never needs it leaves it shut)."""
        return self._preferences is not None

    def open_preferences(self) -> PreferenceStore:
        """Preference memory, opened now if it is not yet (a warm-up; calls on `preferences` do it too)."""
        with self._lock:
            if self._preferences is None:
                from hippograph.stores.preferences.milvus import MilvusPreferenceStore

                self._preferences = MilvusPreferenceStore(
                    self.settings.milvus_path, embeddings=self.embeddings, token=self.settings.milvus_token
                )
                if not self.settings.milvus_uri:  # a Milvus Lite directory of ours: owner-only like the rest
                    private_dir(self.settings.milvus_path)
            return self._preferences  # type: ignore[no-any-return]

    def prefetch(self, *, embedder: bool = True, preferences: bool = False) -> None:
        """Open the slow parts in a background thread, so they load while the caller imports and compiles its
        graphs: the embedder's model (onnxruntime builds its session outside the GIL), then, for callers that
        will recall preferences, Milvus Lite. One thread, one part after the other: Python imports hold the GIL,
        and more threads importing at once would only slow the caller down. Failures are left for the real
        first use, which raises them again with their context."""
        loads = self._slow_parts(embedder=embedder, preferences=preferences)

        def run() -> None:
            for load in loads:
                with contextlib.suppress(Exception):
                    load()

        if loads:
            thread = threading.Thread(target=run, name="hippograph-prefetch", daemon=True)
            thread.start()
            self._prefetching.append(thread)

    def warm_up(self) -> None:
        """Open the slow parts now, before a server takes requests, so its first requests pay nothing for them.
        Failures are left for the first real use, as with `prefetch`."""
        for load in self._slow_parts(embedder=True, preferences=True):
            with contextlib.suppress(Exception):
                load()

    def _slow_parts(self, *, embedder: bool, preferences: bool) -> list[Callable[[], object]]:
        loads: list[Callable[[], object]] = []
        if embedder and isinstance(self.embeddings, MiniLMEmbeddings):  # local only: no paid warm-up API call
            loads.append(lambda: embed_array(self.embeddings, ["warm-up"]))
        if preferences and self._preferences is None:
            loads.append(self.open_preferences)
        return loads

    @cached_property
    def dimension(self) -> int:
        return embedding_dimension(self.embeddings)

    def close(self) -> None:
        for thread in self._prefetching:  # a store still opening would be left open (and its file claimed)
            thread.join()
        for part in (self.tree, self._preferences, self.outbox):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def open_tree_store(settings: Settings, dimension: int) -> TreeStore:
    if settings.tree_backend == "neo4j":
        from hippograph.stores.tree.neo4j import Neo4jTreeStore

        return Neo4jTreeStore(
            settings.neo4j_uri,
            auth=(settings.neo4j_user, settings.neo4j_password),
            database=settings.neo4j_database,
            dimension=dimension,
            cache_cube_rows=settings.neo4j_vector_cache_rows,
        )
    from hippograph.stores.tree.embedded import EmbeddedTreeStore

    return EmbeddedTreeStore(settings.tree_path, dimension=dimension)


def open_outbox(settings: Settings) -> Outbox:
    if settings.outbox_url.startswith("redis://"):
        from hippograph.stores.outbox_redis import RedisOutbox  # type: ignore[import-not-found]

        return RedisOutbox(settings.outbox_url)  # type: ignore[no-any-return]
    return SqliteOutbox(settings.outbox_path)


def load_chat_model(spec: str) -> BaseChatModel | None:
    """A chat model from an `init_chat_model` string (`openai:gpt-4o-mini`), or None when unset."""
    if not spec:
        return None
    from langchain.chat_models import init_chat_model

    return init_chat_model(spec)
