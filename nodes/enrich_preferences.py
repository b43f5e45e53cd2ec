"""enrich: preferences — extract the user's preferences from the turn into preference memory (Milvus).

Candidates come from the LLM extraction (explicit + implicit, with evidence) when the extract node ran one,
else from the rule extractor (explicit first-person statements). Each is checked against the user's stored
preferences: same text (content hash) or a close paraphrase with the same polarity -> merged (evidence added);
same object with the opposite polarity ("I love coffee" -> "I no longer drink coffee") -> the new one
supersedes the old (kept with `valid_to`); else added. Ids are deterministic, so a retried job writes the same
rows (Milvus upsert by primary key).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hippograph.nodes._timing import Node
from hippograph.nodes.enrich_common import EnrichState, node_update
from hippograph.stores.dedup import tokens
from hippograph.stores.embedders import embed_array
from hippograph.stores.models import MemoryStatus, content_hash
from hippograph.stores.preferences.base import Evidence, Preference
from hippograph.stores.preferences.extract import RuleExtractor, match_preference
from hippograph.stores.preferences.lazy import LazyPreferenceStore
from hippograph.stores.services import Services
from hippograph.stores.write import stable_id

PARAPHRASE_COSINE = 0.75
SAME_OBJECT_COSINE = 0.7


def preference_id(user_id: str, cube_id: str, text: str) -> str:
    return stable_id(user_id, cube_id, "pref", content_hash(text))


def polarity(pref: Preference) -> int:
    value = pref.metadata.get("polarity")
    if value in (1, -1):
        return int(value)
    found = match_preference(pref.text)
    return found.polarity if found else 1


def pref_object(pref: Preference) -> str:
    obj = str(pref.metadata.get("object") or "")
    if obj:
        return obj
    found = match_preference(pref.text)
    return found.object if found and found.object else pref.text


def _jaccard(a: str, b: str) -> float:
    x, y = set(tokens(a)), set(tokens(b))
    return len(x & y) / max(1, len(x | y))


def store_preferences(services: Services, prefs: list[Preference]) -> dict[str, list[str]]:
    """Dedup / supersede / add `prefs` (one user) against preference memory. Returns what happened."""
    # The opened store itself, not the lazy wrapper: dedup uses Milvus' extra methods (find_by_hash, similar,
    # update, add with vectors), which the wrapper does not forward (it carries only the protocol).
    store: Any = services.preferences
    if isinstance(store, LazyPreferenceStore):
        store = store.store()
    result: dict[str, list[str]] = {"added": [], "merged": [], "superseded": []}
    if not prefs:
        return result
    for p in prefs:
        p.id = preference_id(p.user_id, p.cube_id, p.text)
    vectors = embed_array(services.embeddings, [p.text for p in prefs])
    objects = embed_array(services.embeddings, [pref_object(p) for p in prefs])
    batch: list[tuple[Preference, np.ndarray]] = []
    for pref, vec, obj_vec in zip(prefs, vectors, objects, strict=True):
        if any(b.id == pref.id for b, _ in batch):
            continue
        by_hash = store.find_by_hash(pref.user_id, [content_hash(pref.text[:4000])]) \
            if hasattr(store, "find_by_hash") else {}
        if by_hash:
            existing_id = next(iter(by_hash.values()))
            (result["added"] if existing_id == pref.id else result["merged"]).append(existing_id)
            continue
        hits = store.similar(vec, user_id=pref.user_id, k=5) if hasattr(store, "similar") else []
        olds = [h.preference for h in hits] + [b for b, _ in batch]
        sims = [h.score for h in hits] + [float(np.dot(v, vec)) for _, v in batch]
        old_objects = embed_array(services.embeddings, [pref_object(o) for o in olds]) if olds else None
        action, target = "new", None
        for i, (old, sim) in enumerate(zip(olds, sims, strict=True)):
            obj_sim = float(np.dot(old_objects[i], obj_vec)) if old_objects is not None else 0.0
            same_object = obj_sim >= SAME_OBJECT_COSINE or _jaccard(pref_object(old), pref_object(pref)) >= 0.5
            if same_object and polarity(old) != polarity(pref) and old.status == MemoryStatus.ACTIVE:
                action, target = "supersede", old
                break
            if sim >= PARAPHRASE_COSINE and polarity(old) == polarity(pref):
                action, target = "duplicate", old
                break
        if action == "duplicate" and target is not None:
            known = {e.message_id for e in target.evidence}
            extra = [e for e in pref.evidence if e.message_id not in known]
            if extra and hasattr(store, "update") and any(h.preference.id == target.id for h in hits):
                target.evidence = [*target.evidence, *extra][-20:]
                store.update(target)
            result["merged"].append(target.id)
            continue
        if action == "supersede" and target is not None:
            store.supersede(target.id, pref)
            result["superseded"].append(target.id)
        elif _takes_vectors(store):
            store.add([pref], vectors=[vec.tolist()])  # type: ignore[call-arg]
        else:
            store.add([pref])
        result["added"].append(pref.id)
        batch.append((pref, vec))
    return result


def _takes_vectors(store: Any) -> bool:
    import inspect

    try:
        return "vectors" in inspect.signature(store.add).parameters
    except (TypeError, ValueError):
        return False


def make_enrich_preferences(services: Services) -> Node:
    def preferences(state: EnrichState) -> dict[str, Any]:
        start = time.perf_counter()
        user, cube = state["user_id"], state["cube_id"]
        raw = state.get("pref_candidates")
        if raw is not None:
            prefs = [Preference.model_validate(p) for p in raw]
        else:
            prefs = RuleExtractor().extract(state.get("messages", []), user_id=user, cube_id=cube)
        for p in prefs:
            if not p.evidence:
                p.evidence = [Evidence(message_id="", quote=p.text[:200])]
        outcome = store_preferences(services, prefs)
        return node_update("preferences", start, {"preferences": outcome["added"] + outcome["merged"],
                                                  "preferences_superseded": outcome["superseded"]})

    return preferences
