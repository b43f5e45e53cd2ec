"""LoCoMo: load conversations, ingest them as turn memories, score turn-level evidence recall@k.

Parsing is `evals.loaders.load_locomo` (sessions from the `session_N` keys, lenient evidence parsing with dropped
ids counted). Each turn becomes one memory whose key carries the speaker, the session date and the turn it replies
to (`conversation_memories`): the index-time half of hippograph's retrieval quality.

Recall@k of a question = share of its evidence dia_ids found among the dia_ids the top-k memories came from.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel

from evals.loaders import LocomoConversation, parse_evidence
from evals.loaders import load_locomo as load_conversations
from evals.qa import QAScores, answer, judge, token_f1
from stores.models import MemoryItem, SourceRef, content_hash
from stores.write import stable_id

#: The categories the usual protocol scores (5 = adversarial, no evidence answer).
SCORED_CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
DEFAULT_KS = (5, 10, 20)
SEED = 7

__all__ = ["load_locomo", "parse_evidence", "recall_at", "run_locomo"]


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str
    session: int
    index: int
    """Position inside its session (0-based)."""
    date: str = ""
    caption: str = ""
    """For image turns: the `blip_caption` of the shared photo."""


@dataclass
class Question:
    question: str
    answer: str
    category: int
    evidence: list[str]
    dropped_evidence: int = 0


@dataclass
class Conversation:
    sample_id: str
    speakers: tuple[str, str]
    turns: list[Turn]
    questions: list[Question]
    session_dates: dict[int, str] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def dia_ids(self) -> set[str]:
        return {t.dia_id for t in self.turns}


def _conversation(conv: LocomoConversation) -> Conversation:
    """View of a parsed conversation (evals.loaders) as a flat list of turns with session number and date."""
    turns = [
        Turn(dia_id=t.dia_id, speaker=t.speaker, text=(t.text or "").strip(), session=s.index, index=i,
             date=s.date_time or "", caption=(t.blip_caption or "").strip())
        for s in conv.sessions for i, t in enumerate(s.turns) if (t.text or "").strip() or t.blip_caption
    ]
    questions = []
    for qa in conv.qa:
        answer = qa.answer if qa.answer is not None else qa.adversarial_answer or ""
        questions.append(Question(question=qa.question, answer=str(answer), category=qa.category,
                                  evidence=list(qa.evidence)))
    missing = sum(1 for q in questions if q.category in SCORED_CATEGORIES and not q.evidence)
    return Conversation(
        sample_id=conv.sample_id, speakers=(conv.speaker_a, conv.speaker_b), turns=turns, questions=questions,
        session_dates={s.index: s.date_time or "" for s in conv.sessions},
        stats={"dropped_evidence": conv.dropped_evidence, "questions_without_evidence": missing},
    )


def load_locomo(path: str | Path, *, limit: int | None = None, samples: Sequence[str] | None = None
                ) -> list[Conversation]:
    """Every conversation of a LoCoMo-format JSON file, parsed by `evals.loaders.load_locomo` (lenient evidence
    parsing, dropped ids counted in `stats["dropped_evidence"]`)."""
    convs = [_conversation(c) for c in load_conversations(path)]
    if samples:
        wanted = set(samples)
        convs = [c for c in convs if c.sample_id in wanted]
    return convs[:limit] if limit else convs


# -- turns as memories --------------------------------------------------------------------------------------

#: How much context a turn memory's key carries (ablation switch; `full` is the product default).
CONTEXT_LEVELS = ("none", "speaker_date", "full")
#: Characters of the previous turn carried in a key.
PREVIOUS_CHARS = 300


def turn_text(turn: Turn) -> str:
    if turn.caption:
        return f"{turn.text} [shares a photo: {turn.caption}]".strip()
    return turn.text


def turn_key(turn: Turn, previous: Turn | None, *, context: str = "full") -> str:
    """The memory's key: who said it and when, and (full) what it answered — so that a reply like "Yes, last
    Friday!" is findable by the words of the question it answers and by its date."""
    if context == "none":
        return ""
    key = f"{turn.speaker} on {turn.date}" if turn.date else turn.speaker
    if context == "full" and previous is not None:
        key += f" | replying to {previous.speaker}: {turn_text(previous)[:PREVIOUS_CHARS]}"
    return key


def conversation_memories(conv: Conversation, *, user_id: str, cube_id: str, context: str = "full"
                          ) -> list[MemoryItem]:
    """One memory per turn, with speaker, session date and dia_id as source ref; stable ids (replays dedupe)."""
    if context not in CONTEXT_LEVELS:
        raise ValueError(f"context must be one of {CONTEXT_LEVELS}, not {context!r}")
    items: list[MemoryItem] = []
    previous: Turn | None = None
    for turn in conv.turns:
        if previous is not None and previous.session != turn.session:
            previous = None
        text = turn_text(turn)
        key = turn_key(turn, previous, context=context)
        items.append(MemoryItem(
            id=stable_id(cube_id, conv.sample_id, turn.dia_id),
            user_id=user_id,
            cube_id=cube_id,
            text=text,
            key=key,
            tags=[],
            source="conversation",
            source_refs=[SourceRef(kind="turn", ref=turn.dia_id,
                                   extra={"speaker": turn.speaker, "date": turn.date, "sample_id": conv.sample_id})],
            session_id=f"{conv.sample_id}:S{turn.session}",
            turn_index=turn.index,
            # Identical short replies ("Thanks!") in different places are different turns, not duplicates.
            content_hash=content_hash(f"{turn.dia_id}\n{key}\n{text}"),
            metadata={"speaker": turn.speaker, "session_date": turn.date, "dia_id": turn.dia_id,
                      "sample_id": conv.sample_id},
        ))
        previous = turn
    return items


# -- scoring ------------------------------------------------------------------------------------------------


def scored_questions(conv: Conversation) -> list[Question]:
    return [q for q in conv.questions if q.category in SCORED_CATEGORIES and q.evidence and q.question]


def recall_at(evidence: Iterable[str], retrieved: Sequence[str], k: int) -> float:
    """Share of evidence ids found among the first k retrieved ids (duplicates in `retrieved` allowed)."""
    gold = set(evidence)
    if not gold:
        return 0.0
    return len(gold & set(retrieved[:k])) / len(gold)


@dataclass
class SystemResult:
    """Per-question retrieved dia_id lists and latencies for one system."""

    name: str
    rows: list[tuple[int, list[str], list[str]]] = field(default_factory=list)
    """(category, evidence, retrieved dia_ids in rank order)."""
    latencies_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    """CPU time of the process per search (all threads): the latency without other processes' contention."""
    ingest_seconds: float = 0.0
    ingest_turns: int = 0

    def summary(self, ks: Sequence[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in ks:
            out[f"recall@{k}"] = _mean(recall_at(ev, got, k) for _, ev, got in self.rows)
        by_cat: dict[str, dict[str, Any]] = {}
        for cat in SCORED_CATEGORIES:
            rows = [r for r in self.rows if r[0] == cat]
            if not rows:
                continue
            entry: dict[str, Any] = {"questions": len(rows)}
            for k in ks:
                entry[f"recall@{k}"] = _mean(recall_at(ev, got, k) for _, ev, got in rows)
            by_cat[CATEGORY_NAMES[cat]] = entry
        out["by_category"] = by_cat
        lat = np.array(self.latencies_ms or [0.0])
        out["search_p50_ms"] = round(float(np.percentile(lat, 50)), 2)
        out["search_p95_ms"] = round(float(np.percentile(lat, 95)), 2)
        cpu = np.array(self.cpu_ms or [0.0])
        out["search_cpu_p50_ms"] = round(float(np.percentile(cpu, 50)), 2)
        out["search_cpu_p95_ms"] = round(float(np.percentile(cpu, 95)), 2)
        out["ingest_turns_per_s"] = round(self.ingest_turns / self.ingest_seconds, 1) if self.ingest_seconds else None
        out["questions"] = len(self.rows)
        return out


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return round(float(np.mean(vals)), 4) if vals else 0.0


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)


Retriever = Callable[[str, int], list[str]]
"""query, k -> dia_ids in rank order."""


def run_questions(name: str, questions: Sequence[Question], retrieve: Retriever, k: int,
                  result: SystemResult | None = None) -> SystemResult:
    result = result or SystemResult(name)
    for q in questions:
        start, cpu = time.perf_counter(), time.process_time()
        got = retrieve(q.question, k)
        result.latencies_ms.append((time.perf_counter() - start) * 1000.0)
        result.cpu_ms.append((time.process_time() - cpu) * 1000.0)
        result.rows.append((q.category, q.evidence, got))
    return result


# -- the run ------------------------------------------------------------------------------------------------

EVAL_USER = "locomo"


class NullPreferenceStore:
    """A preference store with nothing in it (LoCoMo has no preference data; keeps evals free of Milvus)."""

    def add(self, prefs: Sequence[Any]) -> list[str]:
        return []

    def search(self, query: str, **_: Any) -> list[Any]:
        return []

    def close(self) -> None:
        return None


def cube_for(conv: Conversation) -> str:
    return f"{EVAL_USER}.{re.sub(r'[^A-Za-z0-9_.:@-]', '-', conv.sample_id)}"


def open_services(data_dir: Path, *, backend: str = "embedded", embeddings: Any = None, preferences: str = "none"
                  ) -> Any:
    """Services for an eval run in its own data dir (a fresh embedded store, or a Neo4j server from settings)."""
    from graphs.services import Services
    from hippograph.settings import Settings

    settings = Settings(data_dir=data_dir, embedder="minilm", tree_backend=backend)  # type: ignore[arg-type]
    prefs: Any = NullPreferenceStore() if preferences == "none" else None
    return Services.from_settings(settings, embeddings=embeddings, preferences=prefs)


def ingest_conversation(services: Any, conv: Conversation, *, context: str = "full") -> tuple[str, int, float]:
    """Write a conversation's turns into its own cube; returns (cube id, turns written, seconds)."""
    from stores.write import write_memories

    services.registry.create_user(EVAL_USER)
    cube_id = cube_for(conv)
    services.registry.create_cube(EVAL_USER, cube_id, name=conv.sample_id)
    items = conversation_memories(conv, user_id=EVAL_USER, cube_id=cube_id, context=context)
    start = time.perf_counter()
    _, written = write_memories(services.tree, services.embeddings, items)
    return cube_id, written, time.perf_counter() - start


class GraphRetriever:
    """Ask the compiled `search` graph; map the memories it returns to their dia_ids (and keep them for QA)."""

    def __init__(self, graph: Any, cube_id: str) -> None:
        self.graph, self.cube_id = graph, cube_id
        self.last_hits: list[Any] = []

    def __call__(self, query: str, k: int) -> list[str]:
        from graphs.state import ChatContext

        context = ChatContext(user_id=EVAL_USER, cube_ids=[self.cube_id], top_k=k, threshold=0.0, min_keep=0,
                              ingest=False)
        self.last_hits = list(self.graph.invoke({"query": query}, context=context).get("memories", []))
        return [ref.ref for hit in self.last_hits for ref in hit.source_refs if ref.kind == "turn"]


ALL_SYSTEMS = ("hippograph", "bm25", "dense", "langgraph_inmemory")
#: Peers that run when their optional extra is installed (`pip install -e ".[peers]"`).
PEER_SYSTEMS = ("mem0",)


def default_systems() -> tuple[str, ...]:
    import importlib.util

    return ALL_SYSTEMS + tuple(p for p in PEER_SYSTEMS if importlib.util.find_spec(p) is not None)


def run_locomo(
    data: str | Path,
    out_dir: str | Path | None = None,
    *,
    backend: str = "embedded",
    ks: Sequence[int] = DEFAULT_KS,
    limit: int | None = None,
    samples: Sequence[str] | None = None,
    systems: Sequence[str] | None = None,
    context: str = "full",
    work_dir: str | Path | None = None,
    progress: bool = True,
    embeddings: Any = None,
    chat_model: BaseChatModel | None = None,
) -> dict[str, Any]:
    """The whole LoCoMo retrieval eval. Returns (and writes, with `out_dir`) the JSON report.

    With a chat model (`chat_model`, else `HIPPOGRAPH_CHAT_MODEL` from settings) hippograph's top-10 memories also
    answer every question, scored by token F1 and the model as judge (`evals/qa.py`)."""
    import tempfile

    from tqdm import tqdm

    from evals.baselines import BM25Baseline, CachedEmbeddings, DenseBaseline, InMemoryStoreBaseline, Mem0Baseline
    from graphs.search import build_search_graph
    from stores.embedders import MiniLMEmbeddings

    seed_everything()
    systems = tuple(systems or default_systems())
    ks = sorted(set(int(k) for k in ks))
    kmax = max(ks)
    convs = load_locomo(data, limit=limit, samples=samples)
    embeddings = embeddings or CachedEmbeddings(MiniLMEmbeddings())
    results = {name: SystemResult(name) for name in systems}
    tmp = tempfile.TemporaryDirectory(prefix="hippograph-locomo-") if work_dir is None else None
    root = Path(work_dir or tmp.name)  # type: ignore[union-attr]
    services = open_services(root / "hippograph", backend=backend, embeddings=embeddings) \
        if "hippograph" in systems else None
    graph = build_search_graph(services) if services is not None else None
    model: BaseChatModel | None = chat_model or (services.chat_model if services is not None else None)
    qa = QAScores() if model is not None and graph is not None else None
    total_questions = sum(len(scored_questions(c)) for c in convs)
    bar = tqdm(total=total_questions * len(systems), desc="locomo", unit="q", disable=not progress)
    stats = {"dropped_evidence": 0, "questions_without_evidence": 0}
    try:
        for conv in convs:
            for key in stats:
                stats[key] += conv.stats.get(key, 0)
            questions = scored_questions(conv)
            for name in systems:
                bar.set_postfix_str(f"{conv.sample_id} {name}")
                result = results[name]
                start = time.perf_counter()
                retrieve: Retriever
                if name == "hippograph":
                    cube_id, _, _ = ingest_conversation(services, conv, context=context)
                    retrieve = GraphRetriever(graph, cube_id)
                elif name == "bm25":
                    retrieve = BM25Baseline(conv.turns).retrieve
                elif name == "dense":
                    retrieve = DenseBaseline(conv.turns, embeddings).retrieve
                elif name == "langgraph_inmemory":
                    retrieve = InMemoryStoreBaseline(conv.turns, embeddings, namespace=conv.sample_id).retrieve
                elif name == "mem0":
                    retrieve = Mem0Baseline(conv.turns, embeddings, namespace=conv.sample_id,
                                            work_dir=str(root)).retrieve
                else:
                    raise ValueError(f"unknown system {name!r}")
                result.ingest_seconds += time.perf_counter() - start
                result.ingest_turns += len(conv.turns)
                for q in questions:
                    run_questions(name, [q], retrieve, kmax, result)
                    if qa is not None and model is not None and isinstance(retrieve, GraphRetriever):
                        prediction = answer(model, q.question, retrieve.last_hits)
                        qa.add(CATEGORY_NAMES[q.category], token_f1(prediction, q.answer),
                               judge(model, q.question, q.answer, prediction))
                    bar.update(1)
    finally:
        bar.close()
        if services is not None:
            services.close()
        if tmp is not None:
            tmp.cleanup()
    report: dict[str, Any] = {
        "questions": total_questions,
        "systems": {name: results[name].summary(ks) for name in systems},
        "dataset": {"path": str(data), "conversations": [c.sample_id for c in convs],
                    "turns": sum(len(c.turns) for c in convs), **stats},
        "config": {"backend": backend, "ks": ks, "context": context, "embedder": "all-MiniLM-L6-v2 (int8 ONNX)",
                   "seed": SEED},
        "qa": qa.summary(_model_name(model)) if qa is not None else
        {"skipped": True, "reason": "no chat model configured (HIPPOGRAPH_CHAT_MODEL); retrieval only"},
    }
    if out_dir is not None:
        from evals.report import write_report

        write_report(report, Path(out_dir), name="locomo", title="LoCoMo evidence recall")
    return report


def _model_name(model: Any) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


# -- ablations ----------------------------------------------------------------------------------------------

#: Cumulative steps from plain hybrid recall over raw turns to hippograph's defaults. Each row changes one idea:
#: (label, ingest context, node settings). Node settings patch the module constants of nodes.retrieve_tree and
#: nodes.rerank for the row, then restore them.
ABLATION_STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("dense + BM25, RRF k=60, raw turns", "none",
     {"RRF_K": 60, "vector": 1.0, "graph": 0.0, "EXPAND_SEEDS": 0, "PROPAGATE": 0.0, "REWRITE": False}),
    ("+ key: speaker and session date", "speaker_date",
     {"RRF_K": 60, "vector": 1.0, "graph": 0.0, "EXPAND_SEEDS": 0, "PROPAGATE": 0.0, "REWRITE": False}),
    ("+ key: the turn it replies to", "full",
     {"RRF_K": 60, "vector": 1.0, "graph": 0.0, "EXPAND_SEEDS": 0, "PROPAGATE": 0.0, "REWRITE": False}),
    ("+ sharper fusion (RRF k=5, dense weight 0.8)", "full",
     {"RRF_K": 5, "vector": 0.8, "graph": 0.0, "EXPAND_SEEDS": 0, "PROPAGATE": 0.0, "REWRITE": False}),
    ("+ graph neighbours of the top 5 seeds (weight 0.1)", "full",
     {"RRF_K": 5, "vector": 0.8, "graph": 0.1, "EXPAND_SEEDS": 5, "PROPAGATE": 0.0, "REWRITE": False}),
    ("+ adjacent-turn score propagation 0.6 (= default)", "full",
     {"RRF_K": 5, "vector": 0.8, "graph": 0.1, "EXPAND_SEEDS": 5, "PROPAGATE": 0.6, "REWRITE": False}),
    ("+ rule query rewriting (not kept)", "full",
     {"RRF_K": 5, "vector": 0.8, "graph": 0.1, "EXPAND_SEEDS": 5, "PROPAGATE": 0.6, "REWRITE": True}),
    ("+ MMR lambda 0.8 (not kept)", "full",
     {"RRF_K": 5, "vector": 0.8, "graph": 0.1, "EXPAND_SEEDS": 5, "PROPAGATE": 0.6, "REWRITE": False,
      "MMR_LAMBDA": 0.8}),
]


def run_ablations(data: str | Path, *, ks: Sequence[int] = DEFAULT_KS, limit: int | None = None,
                  samples: Sequence[str] | None = None, work_dir: str | Path | None = None,
                  progress: bool = True, embeddings: Any = None) -> list[dict[str, Any]]:
    """Recall@k of each ablation step: the retrieve_tree `recall` and rerank `fuse`/`mmr` functions the search
    graph runs, called directly with the step's settings."""
    import tempfile

    from tqdm import tqdm

    import nodes.rerank as rr
    import nodes.retrieve_tree as rt
    from evals.baselines import CachedEmbeddings
    from stores.embedders import MiniLMEmbeddings, embed_array

    seed_everything()
    ks = sorted(set(int(k) for k in ks))
    convs = load_locomo(data, limit=limit, samples=samples)
    embeddings = embeddings or CachedEmbeddings(MiniLMEmbeddings())
    tmp = tempfile.TemporaryDirectory(prefix="hippograph-ablate-") if work_dir is None else None
    root = Path(work_dir or tmp.name)  # type: ignore[union-attr]
    questions = [(conv, q) for conv in convs for q in scored_questions(conv)]
    vectors = embed_array(embeddings, [q.question for _, q in questions])
    services: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    saved_rr = {n: getattr(rr, n) for n in ("RRF_K", "SIGNAL_WEIGHTS", "PROPAGATE", "MMR_LAMBDA")}
    saved_rt = {n: getattr(rt, n) for n in ("EXPAND_SEEDS", "REWRITE")}
    try:
        for label, context, cfg in tqdm(ABLATION_STEPS, desc="ablations", disable=not progress):
            if context not in services:
                services[context] = open_services(root / f"ablate-{context}", embeddings=embeddings)
                for conv in convs:
                    ingest_conversation(services[context], conv, context=context)
            svc = services[context]
            rr.RRF_K = cfg["RRF_K"]
            rr.SIGNAL_WEIGHTS = {**saved_rr["SIGNAL_WEIGHTS"], "vector": cfg["vector"], "graph": cfg["graph"]}
            rr.PROPAGATE = cfg["PROPAGATE"]
            rr.MMR_LAMBDA = cfg.get("MMR_LAMBDA", 1.0)
            rt.EXPAND_SEEDS, rt.REWRITE = cfg["EXPAND_SEEDS"], cfg["REWRITE"]
            result = SystemResult(label)
            for (conv, q), vec in zip(questions, vectors, strict=True):
                hits = rt.recall(svc, q.question, vec.tolist(), cube_ids=[cube_for(conv)],
                                 pool=max(rt.MIN_POOL, max(ks) * rt.POOL_FACTOR))
                fused = rr.fuse(hits)
                if rr.MMR_LAMBDA < 1.0:
                    fused = rr.mmr(fused, svc.tree.embeddings([h.id for h in fused[: rr.MMR_DEPTH]]))
                got = [ref.ref for h in fused[: max(ks)] for ref in h.source_refs if ref.kind == "turn"]
                result.rows.append((q.category, q.evidence, got))
            summary = result.summary(ks)
            rows.append({"step": label, **{f"recall@{k}": summary[f"recall@{k}"] for k in ks}})
    finally:
        for name, value in saved_rr.items():
            setattr(rr, name, value)
        for name, value in saved_rt.items():
            setattr(rt, name, value)
        for svc in services.values():
            svc.close()
        if tmp is not None:
            tmp.cleanup()
    return rows


def ablation_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    ks = [k for k in rows[0] if k.startswith("recall@")]
    lines = ["| step | " + " | ".join(f"R@{k.split('@')[1]}" for k in ks) + " | ΔR@10 |",
             "|---|" + "---|" * (len(ks) + 1)]
    previous = None
    for row in rows:
        r10 = row.get("recall@10", 0.0)
        delta = "" if previous is None else f"{r10 - previous:+.3f}"
        lines.append(f"| {row['step']} | " + " | ".join(f"{row[k]:.3f}" for k in ks) + f" | {delta} |")
        if "not kept" not in row["step"]:
            previous = r10
    return "\n".join(lines) + "\n"
