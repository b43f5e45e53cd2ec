"""enrich: supersede — a newer fact that contradicts an older one replaces it; the old one is kept.

The old memory gets status `superseded` and `valid_to`, and a `SUPERSEDES` edge links new -> old, so history
stays queryable. Idempotent: an already-superseded memory is left as it is.
"""

from __future__ import annotations

import time
from typing import Any

from nodes.enrich_common import EnrichState, fault_injection, node_update
from stores.models import MemoryStatus, now
from stores.services import Services
from stores.tree.base import Edge, Rel


def make_enrich_supersede(services: Services):  # type: ignore[no-untyped-def]
    def supersede(state: EnrichState) -> dict[str, Any]:
        fault_injection("supersede")
        start = time.perf_counter()
        done: list[str] = []
        for update in state.get("updates", []):
            found = services.tree.get([update["old"]], cube_ids=[state["cube_id"]])
            if not found:
                continue
            old = found[0]
            if old.status == MemoryStatus.ACTIVE:
                old.status = MemoryStatus.SUPERSEDED
                old.valid_to = now()
                old.metadata = {**old.metadata, "superseded_by": update["new"]}
                services.tree.update(old)
            services.tree.add_edges([Edge(src=update["new"], rel=Rel.SUPERSEDES, dst=old.id,
                                          props={"reason": update.get("reason", "")})])
            done.append(old.id)
        return node_update("supersede", start, {"superseded": done})

    return supersede
