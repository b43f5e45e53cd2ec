"""A `PreferenceStore` that opens the real one on its first call.

Opening preference memory is the slowest part of start-up (Milvus Lite starts a server process, and `pymilvus`
imports pandas), and LangGraph's `compile()` reads every attribute path a node's closure names
(`services.preferences.search`) while it looks for subgraphs. A store opened on attribute access would
therefore open at compile time, in every process that builds a chat or search graph, whether or not it ever
recalls a preference. This wrapper's attributes are plain methods: reading them opens nothing; calling one does.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Sequence

from hippograph.stores.preferences.base import Preference, PreferenceHit, PreferenceStore


class LazyPreferenceStore:
    """Delegates every `PreferenceStore` method to the store `opener` returns, called once, on first use."""

    def __init__(self, opener: Callable[[], PreferenceStore]) -> None:
        self._opener = opener
        self._store: PreferenceStore | None = None
        self._lock = threading.Lock()

    def store(self) -> PreferenceStore:
        """The real store, opened now if it is not yet."""
        with self._lock:
            if self._store is None:
                self._store = self._opener()
            return self._store

    def add(self, prefs: Sequence[Preference]) -> builtins.list[str]:
        return self.store().add(prefs)

    def search(
        self,
        query: str,
        *,
        user_id: str,
        cube_ids: Sequence[str] | None = None,
        k: int = 5,
        include_inactive: bool = False,
        vector: Sequence[float] | None = None,
    ) -> builtins.list[PreferenceHit]:
        return self.store().search(query, user_id=user_id, cube_ids=cube_ids, k=k, include_inactive=include_inactive,
                                   vector=vector)

    def get(self, ids: Sequence[str], *, user_id: str | None = None) -> builtins.list[Preference]:
        return self.store().get(ids, user_id=user_id)

    def list(self, *, user_id: str, include_inactive: bool = False, limit: int = 1000) -> builtins.list[Preference]:
        return self.store().list(user_id=user_id, include_inactive=include_inactive, limit=limit)

    def delete(self, ids: Sequence[str], *, user_id: str) -> int:
        return self.store().delete(ids, user_id=user_id)

    def erase(self, *, user_id: str | None = None, cube_ids: Sequence[str] = (), ids: Sequence[str] = ()) -> int:
        return self.store().erase(user_id=user_id, cube_ids=cube_ids, ids=ids)

    def supersede(self, old_id: str, new: Preference) -> str:
        return self.store().supersede(old_id, new)

    def close(self) -> None:
        """Close the real store if it was opened; a store never opened has nothing to close."""
        with self._lock:
            if self._store is not None:
                self._store.close()
