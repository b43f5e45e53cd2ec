"""scope: who is asking, which cubes they may read and write, and what to search for."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.stores.embedders import embed_query_vector
from hippograph.stores.errors import InvalidInputError
from hippograph.stores.models import check_id, check_text
from hippograph.stores.services import Services


def message_text(content: Any) -> str:
    """The text of a message's content (plain string or a list of content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        ).strip()
    return str(content)


def make_scope(services: Services) -> Node:
    @timed("scope")
    def scope(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        user_id = check_id(ctx.user_id, "user id")
        allowed = services.registry.scope(user_id, read=ctx.cube_ids, write=ctx.write_cube_id)
        # Cubes other users shared (and this user accepted): their memories are labelled and treated as
        # untrusted content by the answer, never as instructions.
        read, write, shared = allowed.read, allowed.write, allowed.shared_owners
        # The newest human message is the query; `query` is only for the search graph's bare-query input
        # (a thread's checkpoint still holds the previous turn's query, so it must not win over a new message).
        humans = [m for m in state.get("messages", []) if isinstance(m, HumanMessage)]
        query = message_text(humans[-1].content) if humans else state.get("query") or ""
        if not query:
            raise InvalidInputError("a turn needs a human message (or a `query` for the search graph)")
        check_text(query, "query")
        thread_id = str(get_config().get("configurable", {}).get("thread_id") or "")
        session_id = ctx.session_id or thread_id or "default-session"
        if thread_id:  # a checkpointed thread: remember which cubes its checkpoints may hold text of (erasure)
            services.registry.record_thread(thread_id, user_id, [*read, write])
        # Embed the query once here: both retrieval branches (tree and preferences) and ingest reuse it.
        vector = embed_query_vector(services.embeddings, query)
        return {"query": query, "query_vector": vector, "user_id": user_id, "read_cube_ids": read,
                "shared_cubes": shared, "write_cube_id": write, "session_id": session_id}

    return scope
