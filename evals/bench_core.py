"""Core benchmark on the embedded default: search latency at 10k and 100k memories in one cube, and ingest
throughput against the raw embedder's.

    python -m hippograph.evals.bench_core [--sizes 10000,100000] [--queries 200]

Search = `Memory.search` (the search graph: query embedding + hybrid recall + rerank + threshold), timed per
query. Texts are real LoCoMo turns; the large stores reuse their real embeddings with small noise (latency
depends on sizes and distributions, not on new meanings), written as a user export file and loaded with
`Memory.import_`, so 100k memories load in a minute instead of embedding 100k texts. Prints a table, writes
evals/out/bench_core.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hippograph.evals.common import OUT, SHARED_DATA, console, percentiles, print_table, write_json
from hippograph.memory import Memory
from hippograph.settings import Settings
from hippograph.stores.embedders import MiniLMEmbeddings
from hippograph.stores.services import Services


def locomo_turns(limit: int | None = None) -> list[str]:
    data = json.loads((SHARED_DATA / "locomo" / "locomo10_dev.json").read_text())
    turns: list[str] = []
    for sample in data:
        conv = sample["conversation"]
        for key in sorted((k for k in conv if k.startswith("session_") and not k.endswith("date_time")),
                          key=lambda k: int(k.split("_")[1])):
            turns += [f"{t['speaker']}: {t['text']}" for t in conv[key]]
    return turns[:limit] if limit else turns


def bench_ingest(embedder: MiniLMEmbeddings, texts: list[str], data_dir: Path) -> list[dict[str, Any]]:
    """turns/s through the real write path (`Memory.add` of user messages in a session: turn model + embed +
    dedup + write + NEXT edges) against the raw embedder on the very texts that path embeds (each turn's key +
    text, in the same batches), and against the raw embedder on the bare texts (what the key costs): chat-sized
    adds of 64 turns, and one bulk add."""
    from hippograph.nodes.turns import to_turn, turn_memories

    rows = []
    for mode, step in (("adds of 64 turns", 64), ("one bulk add", len(texts))):
        batches = [texts[i : i + step] for i in range(0, len(texts), step)]
        keyed = [[m.index_text for m in turn_memories([to_turn(t, user_name="bench") for t in batch],
                                                       user_id="bench", cube_id="bench.default",
                                                       session_id=f"s{n}")]
                 for n, batch in enumerate(batches)]
        start = time.perf_counter()
        for batch in keyed:
            embedder.embed_array(batch)
        raw = len(texts) / (time.perf_counter() - start)
        start = time.perf_counter()
        for batch in batches:
            embedder.embed_array(batch)
        bare = len(texts) / (time.perf_counter() - start)
        settings = Settings(data_dir=data_dir / str(step), worker_in_process=False)
        memory = Memory(services=Services.from_settings(settings, embeddings=embedder))
        start = time.perf_counter()
        for n, batch in enumerate(batches):
            memory.add([{"role": "user", "content": t} for t in batch], user_id="bench", session_id=f"s{n}")
        ingest = len(texts) / (time.perf_counter() - start)
        memory.close()
        rows.append({"mode": mode, "raw_embedder_turns_per_s": raw, "ingest_turns_per_s": ingest,
                     "ratio": ingest / raw, "raw_embedder_bare_text_turns_per_s": bare,
                     "ratio_vs_bare_text": ingest / bare})
    return rows


def bench_conversation_ingest(embedder: MiniLMEmbeddings, data_dir: Path, *, conversations: int = 2,
                              repeats: int = 2) -> dict[str, Any]:
    """LoCoMo conversations through `Memory.ingest(conversations=...)` (the whole conversation write path: plan,
    convert, turn model, dedup, embed, write, NEXT/PARENT edges, document registry) against the raw embedder on
    the very texts the ingest embeds (each turn's key + text), session by session as the ingest batches them.
    Runs alternate (raw, ingest, raw, ingest ...) and the best of each counts, so a busy machine hurts both alike;
    CPU seconds of the process are reported next to wall seconds."""
    from hippograph.evals.loaders import load_locomo, locomo_ingest_input
    from hippograph.nodes.turns import to_turn, turn_memories

    convs = load_locomo(SHARED_DATA / "locomo" / "locomo10_dev.json")[:conversations]
    inputs = [locomo_ingest_input(c) for c in convs]
    batches = [[m.index_text for m in turn_memories([to_turn(r) for r in s["messages"] if r["text"].strip()],
                                                    user_id="bench", cube_id="bench.x", session_id=s["session_id"],
                                                    session_date=s["session_date"])]
               for sessions in inputs for s in sessions]
    turns = sum(len(b) for b in batches)
    memory = Memory(services=Services.from_settings(Settings(data_dir=data_dir, worker_in_process=False),
                                                    embeddings=embedder))
    plain = [[r["text"] for r in s["messages"] if r["text"].strip()] for sessions in inputs for s in sessions]
    raw_runs, plain_runs, ingest_runs = [], [], []
    for rep in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            embedder.embed_array(batch)
        raw_runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        wall = time.perf_counter()
        for batch in plain:
            embedder.embed_array(batch)
        plain_runs.append(time.perf_counter() - wall)
        cube = f"bench.conv{rep}"
        memory.create_cube(cube, user_id="bench")
        wall, cpu = time.perf_counter(), time.process_time()
        added = 0
        for sessions in inputs:
            added += memory.ingest(user_id="bench", cube_id=cube, conversations=sessions)["summary"]["added"]
        ingest_runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        assert added >= turns, (added, turns)  # every turn written (plus one node per session)
    memory.close()
    raw_wall, raw_cpu = min(r[0] for r in raw_runs), min(r[1] for r in raw_runs)
    ingest_wall, ingest_cpu = min(r[0] for r in ingest_runs), min(r[1] for r in ingest_runs)
    return {"mode": "Memory.ingest(conversations) vs raw embedder", "turns": turns,
            "raw_embedder_turns_per_s": turns / raw_wall, "ingest_turns_per_s": turns / ingest_wall,
            "ratio": raw_wall / ingest_wall, "cpu_ratio": raw_cpu / ingest_cpu if ingest_cpu else None,
            "raw_embedder_bare_text_turns_per_s": turns / min(plain_runs),
            "ratio_vs_bare_text": min(plain_runs) / ingest_wall}


def bench_search(embedder: MiniLMEmbeddings, texts: list[str], vectors: np.ndarray, size: int, queries: list[str],
                 data_dir: Path) -> dict[str, float]:
    """`Memory.search` latency over `size` memories in one cube, loaded through the public bulk path
    (`Memory.import_` of a user export with vectors: no eval-only writer)."""
    rng = np.random.default_rng(size)
    memory = Memory(services=Services.from_settings(Settings(data_dir=data_dir, worker_in_process=False),
                                                    embeddings=embedder))
    export = data_dir / "bench-export.jsonl"
    with export.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"type": "header", "format": "hippograph-user", "version": 1, "user_id": "bench"}) + "\n")
        out.write(json.dumps({"type": "cube", "cube_id": "bench.default", "name": "default", "default": True}) + "\n")
        for start in tqdm(range(0, size, 5000), desc=f"export file of {size:,} memories", leave=False):
            n = min(5000, size - start)
            idx = (np.arange(start, start + n)) % len(texts)
            noisy = vectors[idx] + rng.normal(0, 0.02, size=(n, vectors.shape[1])).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            for j, i in enumerate(idx):
                item = {"id": f"bench-{start + j:07d}", "user_id": "bench", "cube_id": "bench.default",
                        "text": f"{texts[i]} (#{start + j})",
                        "session_id": f"s{(start + j) // 20}", "turn_index": (start + j) % 20}
                out.write(json.dumps({"type": "memory", "item": item,
                                      "embedding": [round(float(x), 6) for x in noisy[j]]}) + "\n")
    began = time.perf_counter()
    imported = memory.import_(export, user_id="bench")["memories"]
    load_s = time.perf_counter() - began
    export.unlink()
    memory.search(queries[0], user_id="bench")  # warm-up: loads the vector cache
    samples = []
    for query in tqdm(queries, desc=f"searching {size:,}", leave=False):
        began = time.perf_counter()
        memory.search(query, user_id="bench", top_k=10)
        samples.append((time.perf_counter() - began) * 1000)
    memory.close()
    return {"memories": imported, "import_s": round(load_s, 1), **percentiles(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-turns", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT / "bench_core.json")
    args = parser.parse_args()

    embedder = MiniLMEmbeddings()
    texts = locomo_turns()
    console.print(f"embedding {len(texts):,} LoCoMo turns once ...")
    vectors = embedder.embed_array(texts)
    data = json.loads((SHARED_DATA / "locomo" / "locomo10_dev.json").read_text())
    queries = [qa["question"] for sample in data for qa in sample["qa"] if "question" in qa][: args.queries]

    with tempfile.TemporaryDirectory() as tmp:
        ingest = bench_ingest(embedder, texts[: args.ingest_turns], Path(tmp) / "ingest")
        ingest.append(bench_conversation_ingest(embedder, Path(tmp) / "conversations"))
        search = [bench_search(embedder, texts, vectors, int(s), queries, Path(tmp) / f"search{s}")
                  for s in args.sizes.split(",")]
    print_table("search (search graph, top_k=10)", ["memories", "p50 ms", "p95 ms", "mean ms"],
                [[f"{r['memories']:,}", r["p50_ms"], r["p95_ms"], r["mean_ms"]] for r in search])
    print_table("ingest (same turns, same batches; raw embedder on the key + text the write path embeds)",
                ["mode", "raw embedder turns/s", "ingest turns/s", "ratio", "CPU ratio", "ratio vs bare text"],
                [[r["mode"], r["raw_embedder_turns_per_s"], r["ingest_turns_per_s"], r["ratio"],
                  r.get("cpu_ratio") or "-", r["ratio_vs_bare_text"]] for r in ingest])
    path = write_json(args.out, {"search": search, "ingest": ingest})
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
