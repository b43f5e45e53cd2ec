"""Benchmark: Neo4j tree store vs the embedded store — ingest throughput, search latency, filtered-ANN recall.

Scenarios (each on a fresh store of each backend):
- `1x{N}`: N memories in one cube, queries on that cube (`--sizes`, default 10000; add 100000 for the full run);
- `{C}x{M}`: C cubes of M memories, queries on one cube (tenant filtering cost; default 10 x 10000).

Per scenario and backend: ingest memories/s (batches of `--batch` in one transaction each), vector search
p50/p95 (k=10, one cube), full-text search p50/p95, and for Neo4j the Recall@10 of its vector path against exact
cosine on the same data, plus which path ran (exact / ann + candidate count). Random unit vectors (384-d) are
used for latency; `--minilm N` adds a quality check with real MiniLM embeddings of N generated memories.

    .venv/bin/python -m hippograph.evals.bench_neo4j                       # 1x10k and 10x10k (a few minutes)
    .venv/bin/python -m hippograph.evals.bench_neo4j --sizes 10000 100000  # the full table
Writes `evals/out/bench_neo4j.json` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from hippograph.stores.models import MemoryItem
from hippograph.stores.tree.embedded import EmbeddedTreeStore
from hippograph.stores.tree.neo4j import Neo4jTreeStore

console = Console()
OUT = Path(__file__).resolve().parent / "out" / "bench_neo4j.json"
DIM = 384
K = 10

_NAMES = [
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
]
_VERBS = [
    "likes",
    "hates",
    "visited",
    "bought",
    "cooked",
    "painted",
    "studied",
    "repaired",
    "sold",
    "borrowed",
    "recommended",
    "described",
]
_THINGS = [
    "apples",
    "bicycles",
    "pianos",
    "novels",
    "gardens",
    "sushi",
    "mountains",
    "trains",
    "cameras",
    "violins",
    "tomatoes",
    "sailboats",
    "chess",
    "puzzles",
    "coffee",
    "jazz",
    "records",
    "telescopes",
    "orchids",
    "kayaks",
    "lanterns",
    "maps",
    "quilts",
]
_PLACES = [
    "Paris",
    "Lisbon",
    "Oslo",
    "Kyoto",
    "Lima",
    "Cairo",
    "Austin",
    "Dublin",
    "Hanoi",
    "Quito",
    "Perth",
    "Riga",
    "Bern",
    "Accra",
]


def gen_text(rng: random.Random, i: int) -> str:
    return (
        f"{rng.choice(_NAMES)} {rng.choice(_VERBS)} {rng.choice(_THINGS)} and {rng.choice(_THINGS)} "
        f"in {rng.choice(_PLACES)} during week {rng.randint(1, 52)} (note {i})"
    )


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    m = rng.normal(size=(n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def make_items(cube: str, vectors: np.ndarray, texts: list[str], start: int) -> list[MemoryItem]:
    return [
        MemoryItem(
            user_id="bench",
            cube_id=cube,
            text=t,
            embedding=v.tolist(),
            session_id=f"s{(start + j) // 50}",
            turn_index=(start + j) % 50,
        )
        for j, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]


def ingest(store: Any, cubes: dict[str, tuple[np.ndarray, list[str]]], batch: int) -> float:
    """Seconds to write every cube's memories in batches (one transaction per batch)."""
    t = time.perf_counter()
    for cube, (vectors, texts) in cubes.items():
        for s in range(0, len(texts), batch):
            store.add(make_items(cube, vectors[s : s + batch], texts[s : s + batch], s))
    return time.perf_counter() - t


def settle(pid: int | None, *, busy_share: float = 0.05, window_s: float = 2.0, limit_s: float = 180.0) -> float:
    """Seconds waited until the server process `pid` is idle (under 5% of a core for 2 s) after a bulk load:
    its background work (Lucene merges, index updates, flushes) would otherwise be timed as search."""
    if not pid:
        return 0.0
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0

    def cpu_s() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = cpu_s()
        time.sleep(window_s)
        if cpu_s() - before < busy_share * window_s:
            break
    return time.monotonic() - started


def run_scenario(
    name: str,
    store: Any,
    cubes: dict[str, tuple[np.ndarray, list[str]]],
    target: str,
    queries: np.ndarray,
    text_queries: list[str],
    batch: int,
    variants: dict[str, dict[str, Any]] | None = None,
    text_k: int = K,
    server_pid: int | None = None,
) -> list[dict[str, Any]]:
    """One row per variant (store attributes set before each query; variants alternate query by query so
    machine noise hits them alike): the same data, the same queries, before/after in one run."""
    n = sum(len(t) for _, t in cubes.values())
    secs = ingest(store, cubes, batch)
    settled_s = settle(server_pid)
    vectors, _ = cubes[target]
    # the exact answer, by id position: ids are not known to the bench, so compare by text
    texts = cubes[target][1]
    variants = variants or {"": {}}
    lat: dict[str, list[float]] = {v: [] for v in variants}
    recalls: dict[str, list[float]] = {v: [] for v in variants}
    paths: dict[str, dict[str, int]] = {v: {} for v in variants}
    t = time.perf_counter()
    store.vector_search(queries[0].tolist(), cube_ids=[target], k=K)  # Neo4j: reads the cube's vectors if kept
    first_ms = (time.perf_counter() - t) * 1000
    for _ in range(3):  # warm-up
        store.vector_search(queries[0].tolist(), cube_ids=[target], k=K)
    order = list(variants)
    for qi, q in enumerate(queries):
        truth = {texts[i] for i in np.argsort(-(vectors @ q))[:K]}
        for variant in order if qi % 2 == 0 else reversed(order):
            for attr, value in variants[variant].items():
                setattr(store, attr, value)
            t = time.perf_counter()
            hits = store.vector_search(q.tolist(), cube_ids=[target], k=K)
            lat[variant].append((time.perf_counter() - t) * 1000)
            recalls[variant].append(len({h.text for h in hits} & truth) / K)
            plan = getattr(store, "last_plan", {}) or {"path": "exact"}
            key = plan.get("path", "?") + (f"(fetch {plan['fetch']})" if "fetch" in plan else "")
            paths[variant][key] = paths[variant].get(key, 0) + 1
    tlat, common = [], []
    for tq in text_queries:
        t = time.perf_counter()
        store.text_search(tq, cube_ids=[target], k=text_k)
        tlat.append((time.perf_counter() - t) * 1000)
    # Words every memory of every cube holds (as a user's name is in every key of theirs): the full-text index
    # matches the whole corpus, and only what it scores inside the cube is useful.
    for week in range(1, 53):
        t = time.perf_counter()
        store.text_search(f"note week {week}", cube_ids=[target], k=text_k)
        common.append((time.perf_counter() - t) * 1000)
    return [{
        "scenario": name,
        "variant": variant,
        "memories": n,
        "cube_size": len(texts),
        "ingest_per_s": n / secs,
        "ingest_s": secs,
        "settled_after_ingest_s": settled_s,
        "first_query_ms": first_ms,
        "vector_p50_ms": pct(lat[variant], 50),
        "vector_p95_ms": pct(lat[variant], 95),
        "text_p50_ms": pct(tlat, 50),
        "text_p95_ms": pct(tlat, 95),
        "text_k": text_k,
        "text_common_p50_ms": pct(common, 50),
        "text_common_p95_ms": pct(common, 95),
        "recall_at_10": float(np.mean(recalls[variant])),
        "min_recall_at_10": float(np.min(recalls[variant])),
        "paths": paths[variant],
    } for variant in variants]


#: `--before-after`, on one loaded store, alternating query by query: ranked in Neo4j (vector index for big
#: cubes, exact Cypher for small ones) vs ranked from the cube's vectors kept in the process (up to
#: `Settings.neo4j_vector_cache_rows` memories, default 100k), hydrated in one query.
NEO4J_VARIANTS: dict[str, dict[str, Any]] = {
    "in Neo4j": {"rescore_factor": 3, "cache_cube_rows": 0},
    "kept vectors": {"rescore_factor": 3, "cache_cube_rows": 100_000, "cache_rows": 100_000},
}


class TimedTree:
    """The tree store with every call timed by method (the search graph's store calls, for the profile), and the
    dense list and query vector of the last recall kept (Recall@10 of the vector signal). `store` may be swapped
    between searches (the arms of an A/B on one loaded store)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.ms: dict[str, list[float]] = {}
        self.dense: list[Any] = []
        self.vector: list[float] = []
        self.spent = 0.0

    def close(self) -> None:
        """The caller closes the store (the benchmark times several variants on it)."""

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            out = attr(*args, **kwargs)
            ms = (time.perf_counter() - t) * 1000
            self.ms.setdefault(name, []).append(ms)
            self.spent += ms
            if name == "hybrid_search":
                self.vector, self.dense = list(args[0]), list(out[0])
            elif name == "recall_round":
                self.vector, self.dense = list(args[0].vector), list(out.dense)
            return out

        return timed


class CallByCall:
    """A store whose `recall_round` is the separate calls (hybrid, entity, working memory, then `neighbours`):
    how recall read the tree before it was one query (the `--round-ab` baseline)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def recall_round(self, query: Any) -> Any:
        from hippograph.stores.tree.base import recall_round_by_calls

        return recall_round_by_calls(self.store, query)


def graph_questions(rng: random.Random, n: int) -> list[str]:
    """Questions like a user's: a name, a thing and a place (so the entity signal runs too)."""
    return [f"What {rng.choice(_VERBS)} {rng.choice(_NAMES)} in {rng.choice(_PLACES)}, the {rng.choice(_THINGS)}?"
            for _ in range(n)]


def graph_search(store: Any, cubes: dict[str, tuple[np.ndarray, list[str]]], target: str,
                 questions: list[str], arms: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The whole search graph (`Memory.search`: scope, query embedding with MiniLM, retrieve_tree with every
    default signal, Milvus Lite preferences, rerank, threshold) on the loaded store, one cube read; per query
    the wall time, the time inside tree-store calls by method, and Recall@10 of the dense signal vs exact cosine.
    With `arms` (label -> store over the same data) the arms take turns query by query; one result per arm."""
    from hippograph.memory import Memory
    from hippograph.settings import Settings
    from hippograph.stores.services import Services

    arms = arms or {"": store}
    tmp = Path(tempfile.mkdtemp(prefix="bench-graph-"))
    timer = TimedTree(store)
    services = Services.from_settings(Settings(data_dir=tmp, worker_in_process=False, auto_create_users=True),
                                      tree=timer)
    vectors, texts = cubes[target]
    per: dict[str, dict[str, Any]] = {label: {"lat": [], "recalls": [], "store_ms": [], "calls": {}} for label in arms}
    try:
        memory = Memory(services=services)
        try:
            memory.create_user("bench")
            memory.create_cube(target, user_id="bench")
            t = time.perf_counter()
            memory.search(questions[0], user_id="bench", cube_ids=[target])  # opens Milvus Lite, fills caches
            cold_ms = (time.perf_counter() - t) * 1000
            for arm in arms.values():
                timer.store = arm
                for q in questions[:3]:
                    memory.search(q, user_id="bench", cube_ids=[target])
            for i, q in enumerate(questions):
                for label in (list(arms) if i % 2 == 0 else list(arms)[::-1]):
                    timer.store, timer.spent, timer.ms = arms[label], 0.0, per[label]["calls"]
                    t = time.perf_counter()
                    memory.search(q, user_id="bench", cube_ids=[target])
                    per[label]["lat"].append((time.perf_counter() - t) * 1000)
                    per[label]["store_ms"].append(timer.spent)
                    vec = np.asarray(timer.vector, dtype=np.float32)
                    truth = {texts[i] for i in np.argsort(-(vectors @ vec))[:K]}
                    per[label]["recalls"].append(len({h.text for h in timer.dense[:K]} & truth) / K)
        finally:
            memory.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {label: {
        "search_p50_ms": pct(d["lat"], 50),
        "search_p95_ms": pct(d["lat"], 95),
        "cold_first_search_ms": cold_ms,
        "store_p50_ms": pct(d["store_ms"], 50),
        "store_p95_ms": pct(d["store_ms"], 95),
        "store_calls": {name: {"calls": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95)}
                        for name, v in sorted(d["calls"].items())},
        "recall_at_10": float(np.mean(d["recalls"])),
        "min_recall_at_10": float(np.min(d["recalls"])),
    } for label, d in per.items()}


def open_neo4j(args: argparse.Namespace, server: Any, **kw: Any) -> Neo4jTreeStore:
    from tests.neo4j_fixture import wipe_database

    wipe_database(server.uri, server.auth)
    return Neo4jTreeStore(server.uri, auth=server.auth, dimension=kw.pop("dimension", DIM), **kw)


def minilm_check(args: argparse.Namespace, server: Any) -> dict[str, Any]:
    """Recall@10 of the Neo4j vector path on real MiniLM embeddings of generated memories (ANN path forced)."""
    from hippograph.stores.embedders import MiniLMEmbeddings

    rng = random.Random(11)
    texts = [gen_text(rng, i) for i in range(args.minilm)]
    emb = MiniLMEmbeddings()
    t = time.perf_counter()
    vectors = emb.embed_array(texts).astype(np.float32)
    embed_s = time.perf_counter() - t
    qtexts = [gen_text(rng, 10**6 + i) for i in range(args.queries)]
    queries = emb.embed_array(qtexts).astype(np.float32)
    # a second, bigger tenant around it, so the filter matters
    other = unit_rows(np.random.default_rng(5), args.minilm, DIM)
    store = open_neo4j(args, server, exact_threshold=0)
    try:
        ingest(
            store, {"minilm": (vectors, texts), "other": (other, [f"other {i}" for i in range(len(other))])}, args.batch
        )
        recalls, lat = [], []
        for q in queries:
            t = time.perf_counter()
            hits = store.vector_search(q.tolist(), cube_ids=["minilm"], k=K)
            lat.append((time.perf_counter() - t) * 1000)
            truth = {texts[i] for i in np.argsort(-(vectors @ q))[:K]}
            recalls.append(len({h.text for h in hits} & truth) / K)
    finally:
        store.close()
    return {
        "scenario": f"minilm 1x{args.minilm} + other cube",
        "memories": 2 * args.minilm,
        "recall_at_10": float(np.mean(recalls)),
        "min_recall_at_10": float(np.min(recalls)),
        "vector_p50_ms": pct(lat, 50),
        "vector_p95_ms": pct(lat, 95),
        "embed_per_s": args.minilm / embed_s,
    }


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table (for evals/results/neo4j.md and the README)."""
    lines = [
        "| scenario | backend | memories | ingest /s | vector p50 ms | vector p95 ms | text p50 ms | text p95 ms "
        "| text, common words p50 / p95 ms | Recall@10 (min) | vector path |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in report["results"]:
        paths = ", ".join(f"{k} x{v}" for k, v in r["paths"].items())
        lines.append(
            f"| {r['scenario']} | {r['backend']} | {r['memories']:,} | {r['ingest_per_s']:,.0f} | "
            f"{r['vector_p50_ms']:.1f} | {r['vector_p95_ms']:.1f} | {r['text_p50_ms']:.1f} | {r['text_p95_ms']:.1f} | "
            f"{r['text_common_p50_ms']:.1f} / {r['text_common_p95_ms']:.1f} | "
            f"{r['recall_at_10']:.3f} ({r['min_recall_at_10']:.1f}) | {paths} |"
        )
    m = report.get("minilm")
    if m:
        lines += [
            "",
            f"MiniLM quality check ({m['scenario']}, ANN path forced): Neo4j Recall@10 vs exact cosine = "
            f"**{m['recall_at_10']:.3f}** (worst query {m['min_recall_at_10']:.1f}); vector p50 "
            f"{m['vector_p50_ms']:.1f} ms, p95 {m['vector_p95_ms']:.1f} ms.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000], help="one-cube sizes (e.g. 10000 100000)")
    ap.add_argument("--cubes", type=int, default=10, help="cubes in the multi-tenant scenario (0 = skip)")
    ap.add_argument("--cube-size", type=int, default=10_000, help="memories per cube in the multi-tenant scenario")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--text-k", type=int, default=K,
                    help="hits per full-text search (recall asks for 40: its candidate pool)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--minilm", type=int, default=5000, help="MiniLM recall check size (0 = skip)")
    ap.add_argument("--backends", nargs="*", default=["neo4j", "embedded"])
    ap.add_argument("--uri", default="", help="use this Neo4j instead of starting a local one (it is wiped!)")
    ap.add_argument("--pagecache", type=int, default=512, help="page cache MiB of the local Neo4j")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown here")
    ap.add_argument("--graph", type=int, default=0,
                    help="also time this many questions through the whole search graph (Memory.search) per store")
    ap.add_argument("--before-after", action="store_true",
                    help="Neo4j: also time the former ANN re-scoring (every candidate's vector read) on the same data")
    ap.add_argument("--round-ab", action="store_true",
                    help="with --graph: the whole graph with recall's first round in one store call vs call by call, "
                         "taking turns query by query on the same store")
    args = ap.parse_args(argv)

    from hippograph.stores.tree.neo4j_server import LOCAL_AUTH, LocalNeo4j

    rng = np.random.default_rng(42)
    trng = random.Random(42)
    queries = unit_rows(rng, args.queries)
    text_queries = [f"{trng.choice(_NAMES)} {trng.choice(_THINGS)} {trng.choice(_PLACES)}" for _ in range(100)]
    questions = graph_questions(random.Random(7), args.graph)
    scenarios: list[tuple[str, dict[str, tuple[np.ndarray, list[str]]], str]] = []
    for size in args.sizes:
        scenarios.append((f"1x{size}", {"c0": (unit_rows(rng, size), [gen_text(trng, i) for i in range(size)])}, "c0"))
    if args.cubes:
        cubes = {
            f"c{c}": (unit_rows(rng, args.cube_size), [gen_text(trng, i) for i in range(args.cube_size)])
            for c in range(args.cubes)
        }
        scenarios.append((f"{args.cubes}x{args.cube_size}", cubes, f"c{args.cubes // 2}"))

    server: Any = None
    results: list[dict[str, Any]] = []
    minilm: dict[str, Any] | None = None
    try:
        if "neo4j" in args.backends:
            if args.uri:
                server = type("Ext", (), {"uri": args.uri, "auth": LOCAL_AUTH})()
            else:
                with console.status("starting the local Neo4j..."):
                    server = LocalNeo4j(pagecache_mb=args.pagecache).start()
        for name, cubes, target in scenarios:
            for backend in args.backends:
                with console.status(f"{name} on {backend}..."):
                    if backend == "neo4j":
                        store: Any = open_neo4j(args, server)
                    else:
                        tmp = tempfile.mkdtemp(prefix="bench-embedded-")
                        store = EmbeddedTreeStore(Path(tmp) / "tree.sqlite", dimension=DIM)
                    variants = NEO4J_VARIANTS if backend == "neo4j" and args.before_after else None
                    try:
                        rows = run_scenario(name, store, cubes, target, queries, text_queries, args.batch, variants,
                                            text_k=args.text_k,
                                            server_pid=getattr(server, "pid", None) if backend == "neo4j" else None)
                        for row in rows if args.graph else []:
                            for attr, value in (variants or {}).get(row["variant"], {}).items():
                                setattr(store, attr, value)
                            arms = {"one call": store, "call by call": CallByCall(store)} if args.round_ab else None
                            graphs = graph_search(store, cubes, target, questions, arms)
                            row["graph"] = graphs.get("one call", graphs.get(""))
                            if args.round_ab:
                                row["graph_call_by_call"] = graphs["call by call"]
                    finally:
                        store.close()
                        if backend != "neo4j":
                            shutil.rmtree(tmp, ignore_errors=True)  # ~440 MB at 100k: never leave it behind
                for row in rows:
                    row["backend"] = backend + (f" ({row['variant']})" if row["variant"] else "")
                    results.append(row)
                    console.print(
                        f"{name:>10} {row['backend']:>8}: ingest {row['ingest_per_s']:,.0f}/s  vector p50 "
                        f"{row['vector_p50_ms']:.1f} ms p95 {row['vector_p95_ms']:.1f} ms  recall "
                        f"{row['recall_at_10']:.3f}"
                    )
                    for key in ("graph", "graph_call_by_call"):
                        if key in row:
                            g = row[key]
                            console.print(f"{key:>20} search graph p50 {g['search_p50_ms']:.1f} ms p95 "
                                          f"{g['search_p95_ms']:.1f} ms (store {g['store_p50_ms']:.1f} ms p50) "
                                          f"recall {g['recall_at_10']:.3f}  calls {json.dumps(g['store_calls'])}")
        if args.minilm and server is not None:
            with console.status(f"MiniLM recall check ({args.minilm} memories)..."):
                minilm = minilm_check(args, server)
    finally:
        if server is not None and hasattr(server, "close"):
            server.close()

    table = Table(title=f"Neo4j vs embedded tree store (k={K}, {DIM}-d, {args.queries} queries)")
    for col in (
        "scenario",
        "backend",
        "memories",
        "ingest/s",
        "vector p50 ms",
        "vector p95 ms",
        "text p50 ms",
        "text p95 ms",
        "common words p50/p95",
        "recall@10",
        "vector path",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["scenario"],
            r["backend"],
            f"{r['memories']:,}",
            f"{r['ingest_per_s']:,.0f}",
            f"{r['vector_p50_ms']:.1f}",
            f"{r['vector_p95_ms']:.1f}",
            f"{r['text_p50_ms']:.1f}",
            f"{r['text_p95_ms']:.1f}",
            f"{r['text_common_p50_ms']:.1f} / {r['text_common_p95_ms']:.1f}",
            f"{r['recall_at_10']:.3f}",
            ", ".join(f"{k}: {v}" for k, v in r["paths"].items()),
        )
    console.print(table)
    if minilm:
        console.print(
            f"MiniLM ({minilm['scenario']}): Neo4j ANN-path Recall@10 = {minilm['recall_at_10']:.3f} "
            f"(min {minilm['min_recall_at_10']:.1f}), p50 {minilm['vector_p50_ms']:.1f} ms"
        )
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "minilm": minilm,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report))
    console.print(f"[dim]wrote {args.out}[/dim]")
    return report


if __name__ == "__main__":
    main()
