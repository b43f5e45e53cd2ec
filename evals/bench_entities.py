"""What the entity signal adds to search latency at 100k memories (embedded store), against hybrid search in the
same run. Synthetic corpus: each memory names 1-3 entities drawn from a Zipf distribution over 5,000 names (a
few names are everywhere, most are rare), random unit vectors. Run:

    python -m evals.bench_entities --n 100000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hippograph.stores.entities import query_entity_names
from hippograph.stores.models import MemoryItem
from hippograph.stores.tree.embedded import EmbeddedTreeStore

DIM = 384
WORDS = str.split("walk park dinner movie trip bake paint garden music book coffee run swim class concert")


def build(store: EmbeddedTreeStore, n: int, names: list[str], rng: np.random.Generator) -> None:
    zipf = rng.zipf(1.3, size=(n, 3)) % len(names)
    batch: list[MemoryItem] = []
    mentions: dict[str, list[str]] = {}
    for i in range(n):
        picked = [names[j] for j in zipf[i, : 1 + i % 3]]
        vec = rng.standard_normal(DIM).astype(np.float32)
        text = f"{' and '.join(picked)} went to the {WORDS[i % len(WORDS)]} {i}"
        item = MemoryItem(user_id="u", cube_id="c", text=text, embedding=(vec / np.linalg.norm(vec)).tolist())
        batch.append(item)
        mentions[item.id] = picked
        if len(batch) == 2000:
            store.add(batch)
            store.add_mentions(mentions)
            batch, mentions = [], {}
    if batch:
        store.add(batch)
        store.add_mentions(mentions)


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    names = [f"name{i}" for i in range(5000)]
    with tempfile.TemporaryDirectory(prefix="hippograph-bench-entities-") as tmp:
        store = EmbeddedTreeStore(Path(tmp) / "tree.sqlite", dimension=DIM)
        start = time.perf_counter()
        build(store, args.n, names, rng)
        built = time.perf_counter() - start
        hybrid_ms, entity_ms = [], []
        for q in range(args.queries):
            query = f"what did {names[int(rng.zipf(1.3)) % len(names)]} and {names[q % len(names)]} do at the park"
            vec = rng.standard_normal(DIM).astype(np.float32)
            start = time.perf_counter()
            store.hybrid_search(vec.tolist(), query, cube_ids=["c"], k=40)
            hybrid_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            store.entity_search(query_entity_names(query), cube_ids=["c"], k=10)
            entity_ms.append((time.perf_counter() - start) * 1000)
        store.close()
    report = {"memories": args.n, "queries": args.queries, "build_s": round(built, 1),
              "hybrid_p50_ms": percentile(hybrid_ms, 50), "hybrid_p95_ms": percentile(hybrid_ms, 95),
              "entity_p50_ms": percentile(entity_ms, 50), "entity_p95_ms": percentile(entity_ms, 95)}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
