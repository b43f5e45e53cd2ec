"""ingest (deferred): write this turn into tree memory, searchable before the run ends, with a stable id.

The turn goes through the one turn model (`nodes/turns.py`): speaker (the message's `name`, else the user id),
time (the message's `timestamp`, else now), the turn it replies to (the thread's previous message), question tag,
hash. The id derives from (cube, session, message id), so a replayed or resumed run writes the same memory again
instead of a copy, and enrichment later refines it without ever changing the id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.nodes.turns import is_question, shown_text, to_turn, turn_id, turn_memories
from hippograph.stores.services import Services
from hippograph.stores.tree.base import Edge, Rel
from hippograph.stores.write import write_memories

__all__ = ["is_question", "make_ingest"]


def _replied_to(messages: Sequence[BaseMessage], services: Services, user_id: str) -> tuple[str, str] | None:
    """(speaker, text) of the message before the newest human one. Without a chat model the assistant's
    messages only quote memories back (extractive answers), so the turn replies to the message before those."""
    earlier = list(messages[:-1])
    if services.chat_model is None:
        earlier = [m for m in earlier if not isinstance(m, AIMessage)]
    if not earlier:
        return None
    turn = to_turn(earlier[-1], user_name=user_id)
    return turn.speaker, shown_text(turn)


def make_ingest(services: Services) -> Node:
    @timed("ingest")
    def ingest(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ctx = runtime.context or ChatContext()
        messages = list(state.get("messages", []))
        humans = [m for m in messages if isinstance(m, HumanMessage)]
        if not ctx.ingest or not humans:
            return {"written_ids": []}
        cube, session, user_id = state["write_cube_id"], state["session_id"], state["user_id"]
        turn_index = len(humans) - 1
        message = humans[-1]
        upto = messages[: next(i for i in range(len(messages) - 1, -1, -1) if messages[i] is message) + 1]
        turn = to_turn(message, user_name=user_id)
        turn.ref = turn.ref or str(turn_index)
        (item,) = turn_memories([turn], user_id=user_id, cube_id=cube, session_id=session, start_index=turn_index,
                                previous=_replied_to(upto, services, user_id), context=services.settings.turn_key)
        ids, _written = write_memories(services.tree, services.embeddings, [item])
        if turn_index > 0 and ids[0] == item.id:
            previous = turn_id(cube, session, str(humans[-2].id or turn_index - 1))
            if previous != item.id and services.tree.get([previous], cube_ids=[cube]):
                services.tree.add_edges([Edge(src=previous, rel=Rel.NEXT, dst=item.id)])
        return {"written_ids": ids}

    return ingest
