"""PrefEval retrieval eval: is the user's stated preference among the top 1/3/5 preferences recalled?

For every explicit and implicit (choice-based, persona-driven) item of each topic in DIR (laid out like
PrefEval's `benchmark_dataset`): one fresh user; ingest the preference conversation followed by k distractor
turns drawn (seeded) from `filtered_inter_turns.json`; extract preferences from the user's messages (rules, or
a chat model with `--model`), store them through the same dedup/supersede path as the enrichment worker
(Milvus Lite, hybrid dense + BM25 search, local MiniLM embeddings); then search with the item's question.

A recalled preference counts as the stated one when its evidence points into the preference conversation and
its cosine to the gold preference text is >= `MATCH_COSINE` (so an unrelated sentence extracted from a
persona chat does not count). Output: OUT/prefeval.json, OUT/prefeval.md (table), OUT/prefeval.png (chart),
OUT/prefeval_meta.json (counts, timings, extraction precision/recall).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

KINDS = ("explicit", "implicit_choice", "implicit_persona")
_DIRS = {"explicit": "explicit_preference", "implicit_choice": "implicit_preference/choice-based",
         "implicit_persona": "implicit_preference/persona-driven"}
MATCH_COSINE = 0.45
TOPS = (1, 3, 5)


class CachedEmbeddings(Embeddings):
    """Memoises another embedder by text (distractor preferences repeat across thousands of users)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.dimension = getattr(inner, "dimension", None) or len(inner.embed_query("probe"))
        self._cache: dict[str, np.ndarray] = {}

    def embed_array(self, texts: list[str]) -> np.ndarray:
        from hippograph.stores.embedders import embed_array

        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for text, vec in zip(todo, embed_array(self.inner, todo), strict=True):
                self._cache[text] = vec
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


# -- data ----------------------------------------------------------------------------------------------------


def load_items(data_dir: Path, kind: str) -> dict[str, list[dict[str, Any]]]:
    folder = Path(data_dir) / _DIRS[kind]
    return {f.stem: json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))}


def load_distractor_turns(data_dir: Path) -> list[list[dict[str, str]]]:
    """`filtered_inter_turns.json` as a list of turns, each [user message, assistant message]."""
    turns: list[list[dict[str, str]]] = []
    for c, conv in enumerate(json.loads((Path(data_dir) / "filtered_inter_turns.json").read_text())):
        msgs = conv["conversation"]
        for i in range(0, len(msgs) - 1, 2):
            turns.append([
                {"id": f"d{c}-{i}", "role": msgs[i]["role"], "content": msgs[i]["content"]},
                {"id": f"d{c}-{i + 1}", "role": msgs[i + 1]["role"], "content": msgs[i + 1]["content"]},
            ])
    return turns


def preference_conversation(kind: str, item: dict[str, Any]) -> list[dict[str, str]]:
    if kind == "explicit":
        return [{"id": "p0", "role": "user", "content": item["preference"]}]
    conv = item["conversation"]
    if kind == "implicit_choice":
        return [{"id": "p0", "role": "user", "content": conv["query"]},
                {"id": "p1", "role": "assistant", "content": conv["assistant_options"]},
                {"id": "p2", "role": "user", "content": conv["user_selection"]},
                {"id": "p3", "role": "assistant", "content": conv["assistant_acknowledgment"]}]
    msgs = []
    for n, key in enumerate(sorted(conv, key=int)):
        msgs.append({"id": f"p{2 * n}", "role": "user", "content": conv[key]["user"]})
        msgs.append({"id": f"p{2 * n + 1}", "role": "assistant", "content": conv[key]["assistant"]})
    return msgs


def sample_distractors(turns: Sequence[list[dict[str, str]]], k: int, rng: random.Random) -> list[dict[str, str]]:
    """k consecutive turns from a seeded random start (wrapping around the pool), as PrefEval inserts them."""
    if k <= 0 or not turns:
        return []
    start = rng.randrange(len(turns))
    return [m for j in range(k) for m in turns[(start + j) % len(turns)]]


# -- extraction quality --------------------------------------------------------------------------------------


def measure_extraction(data_dir: Path) -> dict[str, float]:
    """Rule extractor on PrefEval explicit items: positives = stated preferences, negatives = the questions.

    recall = share of preference statements yielding >= 1 preference; precision = extracted items that come from
    a preference statement / all extracted items (questions must yield none).
    """
    from hippograph.stores.preferences.extract import RuleExtractor

    extractor = RuleExtractor()
    tp = fn = fp = tn = 0
    for items in load_items(data_dir, "explicit").values():
        for item in items:
            got = extractor.extract([{"id": "p", "role": "user", "content": item["preference"]}],
                                    user_id="eval", cube_id="eval")
            tp, fn = (tp + 1, fn) if got else (tp, fn + 1)
            neg = extractor.extract([{"id": "q", "role": "user", "content": item["question"]}],
                                    user_id="eval", cube_id="eval")
            fp, tn = (fp + len(neg), tn) if neg else (fp, tn + 1)
    return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "tp": tp, "fn": fn, "fp": fp,
            "tn": tn}


# -- the run -------------------------------------------------------------------------------------------------


def run_prefeval(
    data_dir: Path,
    out_dir: Path,
    *,
    ks: Sequence[int] = (10, 300),
    kinds: Sequence[str] = KINDS,
    limit_per_topic: int | None = None,
    seed: int = 0,
    embeddings: Embeddings | None = None,
    chat_model: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    from tqdm import tqdm

    from hippograph.nodes.enrich_preferences import store_preferences
    from hippograph.stores.embedders import MiniLMEmbeddings
    from hippograph.stores.preferences.extract import LLMExtractor, RuleExtractor
    from hippograph.stores.preferences.milvus import MilvusPreferenceStore

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emb = CachedEmbeddings(embeddings or MiniLMEmbeddings())
    db = out_dir / "prefeval_milvus.db"
    store = MilvusPreferenceStore(db, embeddings=emb, collection="prefeval")
    store.drop()
    store.close()
    store = MilvusPreferenceStore(db, embeddings=emb, collection="prefeval")
    services = SimpleNamespace(preferences=store, embeddings=emb)
    rules = RuleExtractor()
    llm = LLMExtractor(chat_model) if chat_model is not None else None
    turns = load_distractor_turns(data_dir)
    distractor_prefs: dict[str, list[Any]] = {}  # message id -> rule-extracted preferences (cached)

    def extract(messages: list[dict[str, str]], user: str) -> list[Any]:
        if llm is not None:
            return llm.extract(messages, user_id=user, cube_id=user)
        prefs = []
        for m in messages:
            if m["id"].startswith("d"):
                if m["id"] not in distractor_prefs:
                    distractor_prefs[m["id"]] = rules.extract([m], user_id="cache", cube_id="cache")
                prefs += [p.model_copy(update={"user_id": user, "cube_id": user, "id": p.id + user})
                          for p in distractor_prefs[m["id"]]]
            else:
                prefs += rules.extract([m], user_id=user, cube_id=user)
        return prefs

    results: dict[str, Any] = {}
    meta: dict[str, Any] = {"seed": seed, "ks": list(ks), "match_cosine": MATCH_COSINE, "counts": {},
                            "stored_preferences_mean": {}, "seconds": {}}
    for kind in kinds:
        by_topic_items = load_items(data_dir, kind)
        results[kind] = {}
        for k in ks:
            started = time.time()
            hits: dict[str, list[list[int]]] = defaultdict(list)  # topic -> per item [top1, top3, top5]
            stored: list[int] = []
            work = [(topic, i, item) for topic, items in by_topic_items.items()
                    for i, item in enumerate(items[:limit_per_topic] if limit_per_topic else items)]
            bar = tqdm(work, desc=f"{kind} k={k}", disable=not progress, unit="item")
            for topic, i, item in bar:
                rng = random.Random(f"{seed}:{kind}:{k}:{topic}:{i}")
                user = f"{kind}.{k}.{topic}.{i}"
                pref_msgs = preference_conversation(kind, item)
                messages = pref_msgs + sample_distractors(turns, k, rng)
                store_preferences(services, extract(messages, user))  # type: ignore[arg-type]
                stored.append(len(store.list(user_id=user)))
                found = store.search(item["question"], user_id=user, k=max(TOPS))
                gold_ids = {m["id"] for m in pref_msgs}
                gold_vec = emb.embed_array([item["preference"]])[0]
                vecs = emb.embed_array([h.text for h in found]) if found else np.zeros((0, emb.dimension))
                match = [any(e.message_id in gold_ids for e in h.preference.evidence)
                         and float(vecs[r] @ gold_vec) >= MATCH_COSINE for r, h in enumerate(found)]
                first = next((r for r, ok in enumerate(match) if ok), None)
                hits[topic].append([int(first is not None and first < t) for t in TOPS])
                # Users never see each other's preferences; dropping this one keeps the collection (and every
                # later insert and search) small, so a full run takes minutes instead of hours.
                store.delete([p.id for p in store.list(user_id=user, include_inactive=True)], user_id=user)
            per_topic = {t: {f"top{n}": round(float(np.mean([h[j] for h in rows])), 4)
                             for j, n in enumerate(TOPS)} for t, rows in hits.items()}
            every = [h for rows in hits.values() for h in rows]
            overall = {f"top{n}": round(float(np.mean([h[j] for h in every])) if every else 0.0, 4)
                       for j, n in enumerate(TOPS)}
            results[kind][str(k)] = {"overall": overall, "by_topic": per_topic}
            meta["counts"][f"{kind}/{k}"] = len(every)
            meta["stored_preferences_mean"][f"{kind}/{k}"] = round(float(np.mean(stored)) if stored else 0, 2)
            meta["seconds"][f"{kind}/{k}"] = round(time.time() - started, 1)
            (out_dir / "prefeval.partial.json").write_text(json.dumps(results, indent=2))  # progress so far
    meta["extraction"] = measure_extraction(data_dir)
    meta["extractor"] = "llm" if llm is not None else "rules"
    store.drop()
    store.close()
    for leftover in [*out_dir.glob("prefeval_milvus.db*"), out_dir / "prefeval.partial.json"]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.exists():
            leftover.unlink()
    write_reports(results, meta, out_dir)
    return results


def write_reports(results: dict[str, Any], meta: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "prefeval.json").write_text(json.dumps(results, indent=2))
    (out_dir / "prefeval_meta.json").write_text(json.dumps(meta, indent=2))
    lines = ["# PrefEval preference retrieval", "",
             f"Extractor: {meta.get('extractor')}; seed {meta.get('seed')}; a hit = evidence in the preference "
             f"conversation and cosine to the gold preference >= {meta.get('match_cosine')}.", "",
             "| kind | k | items | top1 | top3 | top5 |", "|---|---|---|---|---|---|"]
    for kind, per_k in results.items():
        for k, res in per_k.items():
            o = res["overall"]
            lines.append(f"| {kind} | {k} | {meta['counts'].get(f'{kind}/{k}', '')} | {o['top1']:.3f} | "
                         f"{o['top3']:.3f} | {o['top5']:.3f} |")
    lines += ["", "## By topic (top3)", ""]
    topics = sorted({t for per_k in results.values() for res in per_k.values() for t in res["by_topic"]})
    cols = [(kind, k) for kind, per_k in results.items() for k in per_k]
    lines.append("| topic | " + " | ".join(f"{kind} k={k}" for kind, k in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for topic in topics:
        cells = [results[kind][k]["by_topic"].get(topic, {}).get("top3") for kind, k in cols]
        lines.append(f"| {topic} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |")
    ext = meta.get("extraction", {})
    if ext:
        lines += ["", f"Rule extraction on explicit items: precision {ext['precision']:.3f}, "
                      f"recall {ext['recall']:.3f} (tp {ext['tp']}, fn {ext['fn']}, fp {ext['fp']})."]
    (out_dir / "prefeval.md").write_text("\n".join(lines) + "\n")
    _chart(results, out_dir / "prefeval.png")


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(kind, k) for kind, per_k in results.items() for k in per_k]
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    for j, n in enumerate(TOPS):
        vals = [results[kind][k]["overall"][f"top{n}"] for kind, k in groups]
        ax.bar(x + (j - 1) * 0.27, vals, 0.27, label=f"top{n}")
    ax.set_xticks(x, [f"{kind}\nk={k}" for kind, k in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("stated preference recalled")
    ax.set_title("PrefEval preference retrieval (hippograph)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
