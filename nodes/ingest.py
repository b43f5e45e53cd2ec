"""ingest (deferred): write this turn into tree memory, searchable before the run ends, with a stable id.

The id derives from (cube, session, message id), so a replayed or resumed run writes the same memory again
instead of a copy, and enrichment later refines it without ever changing the id.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from graphs.services import Services
from graphs.state import ChatContext, ChatState
from nodes._timing import timed
from nodes.scope import message_text
from stores.models import MemoryItem, MemoryType, SourceRef
from stores.tree.base import Edge, Rel
from stores.write import stable_id, write_memories


def is_question(text: str) -> bool:
    """A turn that only asks (it restates a need and answers nothing): ranked below statements."""
    return text.rstrip().endswith("?")


def make_ingest(services: Services):  # type: ignore[no-untyped-def]
    @timed("ingest")
    def ingest(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        humans = [m for m in state.get("messages", []) if isinstance(m, HumanMessage)]
        if not ctx.ingest or not humans:
            return {"written_ids": []}
        cube, session = state["write_cube_id"], state["session_id"]
        turn_index = len(humans) - 1
        message = humans[-1]
        item = MemoryItem(
            id=stable_id(cube, session, str(message.id or turn_index)),
            user_id=state["user_id"],
            cube_id=cube,
            text=message_text(message.content),
            key=f"{state['user_id']} said",
            tags=["question"] if is_question(message_text(message.content)) else [],
            memory_type=MemoryType.LONG_TERM,
            source="conversation",
            source_refs=[SourceRef(kind="message", ref=str(message.id or ""))],
            session_id=session,
            turn_index=turn_index,
        )
        # The query was this same text: reuse its embedding instead of embedding twice.
        if state.get("query") == item.text and state.get("query_vector"):
            item.embedding = state["query_vector"]
        ids, _written = write_memories(services.tree, services.embeddings, [item])
        if turn_index > 0 and ids[0] == item.id:
            previous = stable_id(cube, session, str(humans[-2].id or turn_index - 1))
            if services.tree.get([previous], cube_ids=[cube]):
                services.tree.add_edges([Edge(src=previous, rel=Rel.NEXT, dst=item.id)])
        return {"written_ids": ids}

    return ingest
