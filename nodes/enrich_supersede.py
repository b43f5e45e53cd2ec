"""enrich: supersede — a newer fact that contradicts an older one replaces it; the old one is kept.

The old memory gets status `superseded` and `valid_to`, and a `SUPERSEDES` edge links new -> old, so history
stays queryable. Idempotent: an already-superseded memory is left as it is.
"""

from __future__ import annotations

import time
from typing import Any

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import EnrichState, node_update
from hippograph.stores.models import MemoryStatus
from hippograph.stores.services import Services


def make_enrich_supersede(services: Services) -> Node:
    def supersede(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        done: list[str] = []
        for update in state.get("updates", []):
            found = services.tree.get([update["old"]], cube_ids=[state["cube_id"]])
            if not found:
                continue
            old, new = found[0], services.tree.get([update["new"]], cube_ids=[state["cube_id"]])
            if old.status == MemoryStatus.ACTIVE and new:
                # One atomic step: the old version closes (`valid_to`) and the SUPERSEDES edge appears together.
                new[0].embedding = services.tree.embeddings([new[0].id])[new[0].id].tolist()
                services.tree.supersede(old.id, new[0])
            done.append(old.id)
        return node_update("supersede", start, {"superseded": done})

    return supersede
