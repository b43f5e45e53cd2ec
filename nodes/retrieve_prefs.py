"""retrieve_prefs: the user's current preferences that bear on the query (preference memory, Milvus)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.stores.services import Services

PREFERENCES_K = 5


def make_retrieve_prefs(services: Services) -> Node:
    @timed("retrieve_prefs")
    def retrieve_prefs(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        hits = services.preferences.search(
            state["query"], user_id=state["user_id"], cube_ids=state["read_cube_ids"], k=PREFERENCES_K,
            vector=state.get("query_vector"),
        )
        return {"preferences": hits}

    return retrieve_prefs
