"""enrich: extract — atomic facts (and, with a model, preferences) from the turn.

Fine mode with a chat model: one structured-output call yields facts and explicit + implicit preferences with
evidence. Otherwise rules: each declarative user sentence is a fact; preferences come later from the rule
extractor. The result is checkpointed, so a resumed job never calls the model twice.
"""

from __future__ import annotations

import time
from typing import Any

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import EnrichState, fact_id, node_update
from hippograph.stores.models import content_hash
from hippograph.stores.preferences.extract import LLMExtractor, as_messages, extract_facts_by_rules, preferences_from
from hippograph.stores.services import Services


def make_enrich_extract(services: Services) -> Node:
    def extract(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        cube = state["cube_id"]
        messages = as_messages(state.get("messages", []))
        mode = state.get("mode") or services.settings.mode
        facts: list[dict[str, Any]] = []
        pref_candidates: list[dict[str, Any]] | None = None
        if services.chat_model is not None and mode == "fine":
            extractor = LLMExtractor(services.chat_model)
            result = extractor.extract_turn(messages)
            known = {m.id for m in messages}
            for extracted in result.facts:
                if extracted.text.strip():
                    facts.append({"text": extracted.text.strip(),
                                  "message_ids": [i for i in extracted.message_ids if i in known]})
            prefs = preferences_from(result, messages, user_id=state["user_id"], cube_id=cube)
            pref_candidates = [p.model_dump(mode="json") for p in prefs]
        else:
            facts = [{"text": text, "message_ids": [mid]} for mid, text in extract_facts_by_rules(messages)]
        # A fact identical to a whole raw turn adds nothing: the turn is already memory.
        raw_hashes = {content_hash(m.content) for m in messages if m.content.strip()}
        seen: set[str] = set()
        unique = []
        for fact in facts:
            h = content_hash(fact["text"])
            if h in raw_hashes or h in seen:
                continue
            seen.add(h)
            unique.append({**fact, "id": fact_id(cube, fact["text"])})
        return node_update("extract", start, {"facts": unique, "pref_candidates": pref_candidates})

    return extract
