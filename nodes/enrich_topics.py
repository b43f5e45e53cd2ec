"""enrich: topics — hang each new fact under a topic node (PARENT edge); create a topic for a cluster.

A fact joins the nearest TopicMemory when its cosine to it reaches `TOPIC_ATTACH_COSINE`. Otherwise, if at
least `TOPIC_MIN_CLUSTER` related facts (cosine >= `TOPIC_CLUSTER_COSINE`, itself included) have no topic yet,
a TopicMemory is created for them: its text names the cluster's most frequent content words, its vector is the
members' centroid, and its id derives from the first member (a resumed job recreates the same topic).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import (
    TOPIC_ATTACH_COSINE,
    TOPIC_CLUSTER_COSINE,
    TOPIC_MIN_CLUSTER,
    EnrichState,
    node_update,
)
from hippograph.nodes.enrich_dedup import candidate_vectors
from hippograph.stores.dedup import _STOP, tokens
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SourceRef
from hippograph.stores.services import Services
from hippograph.stores.tree.ops import set_parent
from hippograph.stores.write import stable_id

_MORE_STOP = frozenset(str.split("like love prefer really think know want get got go going lot much many thing things "
                       "one would could should said say"))


def topic_label(texts: list[str], n: int = 4) -> str:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({t for t in tokens(text) if t not in _STOP and t not in _MORE_STOP and len(t) > 2
                       and not t.isdigit()})
    # Ties broken alphabetically: set order differs between processes (hash seed), labels must not.
    words = [w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:n]]
    return "Topic: " + (", ".join(words) if words else "misc")


def make_enrich_topics(services: Services) -> Node:
    def topics(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        cube, user = state["cube_id"], state["user_id"]
        items = [i for i in services.tree.get(state.get("written", []), cube_ids=[cube])
                 if i.status == MemoryStatus.ACTIVE]
        touched: list[str] = []
        if items:
            vectors = candidate_vectors(services, items)
            for item, vec in zip(items, vectors, strict=True):
                if item.parent_id:
                    touched.append(item.parent_id)
                    continue
                hits = services.tree.vector_search(vec.tolist(), cube_ids=[cube], k=30)
                topic_hits = [h for h in hits if h.item.memory_type == MemoryType.TOPIC]
                if topic_hits and topic_hits[0].scores.get("vector", 0.0) >= TOPIC_ATTACH_COSINE:
                    set_parent(services.tree, item.id, topic_hits[0].id)
                    touched.append(topic_hits[0].id)
                    continue
                members = [item] + [
                    h.item for h in hits
                    if h.id != item.id and h.item.source == "enrichment" and not h.item.parent_id
                    and h.item.memory_type == MemoryType.LONG_TERM
                    and h.scores.get("vector", 0.0) >= TOPIC_CLUSTER_COSINE
                ]
                if len(members) < TOPIC_MIN_CLUSTER:
                    continue
                member_vecs = candidate_vectors(services, members)
                centroid = member_vecs.mean(axis=0)
                centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
                topic = MemoryItem(
                    id=stable_id(cube, "topic", min(m.id for m in members)), user_id=user, cube_id=cube,
                    text=topic_label([m.text for m in members]), key="topic", memory_type=MemoryType.TOPIC,
                    source="enrichment", source_refs=[SourceRef(kind="memory", ref=m.id) for m in members],
                    metadata={"members": len(members)}, embedding=centroid.tolist(),
                )
                if not services.tree.get([topic.id]):
                    services.tree.add([topic])
                for member in members:
                    set_parent(services.tree, member.id, topic.id)
                touched.append(topic.id)
        return node_update("topics", start, {"topics": list(dict.fromkeys(touched))})

    return topics
