"""schedule_enrichment (deferred): put an enrichment job for this turn in the durable outbox, and return."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime

from hippograph.nodes._timing import Node, timed
from hippograph.nodes.scope import message_text
from hippograph.nodes.state import ChatContext, ChatState
from hippograph.stores.services import Services

ENRICH_TURN = "enrich_turn"


def make_schedule_enrichment(services: Services) -> Node:
    @timed("schedule_enrichment")
    def schedule_enrichment(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
        ids = state.get("written_ids", [])
        if not ids:
            return {}
        ctx = runtime.context or ChatContext()
        recent = [m for m in state.get("messages", []) if isinstance(m, HumanMessage | AIMessage)][-2:]
        payload = {
            "user_id": state["user_id"],
            "cube_id": state["write_cube_id"],
            "session_id": state["session_id"],
            "thread_id": str(get_config().get("configurable", {}).get("thread_id") or ""),
            "memory_ids": ids,
            "mode": ctx.mode,
            "messages": [{"id": m.id, "role": m.type, "content": message_text(m.content)} for m in recent],
        }
        job_id = services.outbox.enqueue(ENRICH_TURN, payload, dedup_key=f"enrich:{ids[-1]}")
        return {"job_id": job_id}

    return schedule_enrichment
