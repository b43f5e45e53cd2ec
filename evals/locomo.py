"""LoCoMo: write conversations through hippograph's public API, ask through it, score evidence recall@k.

Parsing is `evals.loaders.load_locomo` (sessions from the `session_N` keys, lenient evidence parsing with dropped
ids counted). hippograph is measured exactly as a user runs it, with its default stores (Milvus Lite
preference memory on: the chat replay consults it every turn; `Memory.search` returns memories only, without it):

- `hippograph`: each conversation through `Memory.ingest(conversations=...)`, questions through `Memory.search`;
- `hippograph_chat`: the same conversation replayed turn by turn through the chat graph (one thread per session,
  each turn a named, timestamped `HumanMessage`), questions through `Memory.search`.

Both write through the one turn model (`nodes/turns.py`); no eval module builds a memory itself.

Metrics per question (categories 1-4 with evidence):
- recall@k: share of its evidence dia_ids among the dia_ids the top-k memories came from (turn level);
- session_any@k: 1 when a session holding evidence is among the first k distinct sessions of the hits (the
  session-level figure other no-LLM retrievers publish for LoCoMo and LongMemEval).
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

from hippograph.evals.loaders import LocomoConversation, locomo_ingest_input, parse_evidence
from hippograph.evals.loaders import load_locomo as load_conversations
from hippograph.evals.qa import QAScores, answer, judge, token_f1
from hippograph.stores.recall_config import RecallConfig

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
    raw: LocomoConversation | None = None
    """The parsed conversation (`evals.loaders`), for `locomo_ingest_input`."""

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
        stats={"dropped_evidence": conv.dropped_evidence, "questions_without_evidence": missing}, raw=conv,
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


def turn_text(turn: Turn) -> str:
    """A turn's text as a plain transcript RAG indexes it (the baselines): words plus the photo caption."""
    if turn.caption:
        return f"{turn.text} [shares a photo: {turn.caption}]".strip()
    return turn.text


# -- scoring ------------------------------------------------------------------------------------------------


def scored_questions(conv: Conversation) -> list[Question]:
    return [q for q in conv.questions if q.category in SCORED_CATEGORIES and q.evidence and q.question]


def recall_at(evidence: Iterable[str], retrieved: Sequence[str], k: int) -> float:
    """Share of evidence ids found among the first k retrieved ids (duplicates in `retrieved` allowed)."""
    gold = set(evidence)
    if not gold:
        return 0.0
    return len(gold & set(retrieved[:k])) / len(gold)


def session_any_at(evidence_sessions: Iterable[str], retrieved_sessions: Sequence[str], k: int) -> float:
    """1.0 when an evidence session is among the first k distinct sessions of the hits (in rank order), else 0."""
    gold = set(evidence_sessions)
    first = list(dict.fromkeys(s for s in retrieved_sessions if s))[:k]
    return 1.0 if gold & set(first) else 0.0


@dataclass
class Row:
    """One scored question: its category, evidence and what a system retrieved (ids and their sessions)."""

    category: str
    evidence: list[str]
    retrieved: list[str]
    evidence_sessions: list[str] = field(default_factory=list)
    retrieved_sessions: list[str] = field(default_factory=list)


@dataclass
class SystemResult:
    """Per-question retrieved id lists and latencies for one system."""

    name: str
    rows: list[Row] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    """CPU time of the process per search (all threads): the latency without other processes' contention."""
    ingest_seconds: float = 0.0
    ingest_turns: int = 0

    def _scores(self, rows: list[Row], ks: Sequence[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in ks:
            out[f"recall@{k}"] = _mean(recall_at(r.evidence, r.retrieved, k) for r in rows if r.evidence)
        if any(r.evidence_sessions for r in rows):
            for k in ks:
                out[f"session_any@{k}"] = _mean(
                    session_any_at(r.evidence_sessions, r.retrieved_sessions, k) for r in rows)
        return out

    def summary(self, ks: Sequence[int]) -> dict[str, Any]:
        out: dict[str, Any] = self._scores(self.rows, ks)
        by_cat: dict[str, dict[str, Any]] = {}
        for cat in dict.fromkeys(r.category for r in self.rows):
            rows = [r for r in self.rows if r.category == cat]
            by_cat[cat] = {"questions": len(rows), **self._scores(rows, ks)}
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


def ask(result: SystemResult, retrieve: Retriever, question: str, k: int, *, category: str, evidence: list[str],
        session_of: Callable[[str], str]) -> list[str]:
    """Time one retrieval and record its row (sessions mapped with `session_of`)."""
    start, cpu = time.perf_counter(), time.process_time()
    got = retrieve(question, k)
    result.latencies_ms.append((time.perf_counter() - start) * 1000.0)
    result.cpu_ms.append((time.process_time() - cpu) * 1000.0)
    result.rows.append(Row(category=category, evidence=list(evidence), retrieved=got,
                           evidence_sessions=sorted({session_of(e) for e in evidence}),
                           retrieved_sessions=[session_of(g) for g in got]))
    return got


# -- hippograph through its public API ---------------------------------------------------------------------

EVAL_USER = "locomo"


def cube_for(conv: Conversation, suffix: str = "") -> str:
    return f"{EVAL_USER}.{re.sub(r'[^A-Za-z0-9_.:@-]', '-', conv.sample_id)}{suffix}"


def open_memory(data_dir: Path, *, backend: str = "embedded", embeddings: Any = None, turn_key: str = "full",
                **overrides: Any) -> Any:
    """A `Memory` for an eval run in its own data dir, with the product's default stores (Milvus Lite preference
    memory included). The enrichment worker stays off so that the figures measure what was written.
    `overrides`: more `Settings` fields (an ablation's write-side setting)."""
    from hippograph.memory import Memory
    from hippograph.settings import Settings
    from hippograph.stores.services import Services

    settings = Settings(data_dir=data_dir, embedder="minilm", tree_backend=backend,  # type: ignore[arg-type]
                        worker_in_process=False, turn_key=turn_key, **overrides)  # type: ignore[arg-type]
    memory = Memory(services=Services.from_settings(settings, embeddings=embeddings))
    # Warm-up, untimed: loads the ONNX model and the vector cache, as a running service already has.
    memory.search("warm-up", user_id=EVAL_USER)
    return memory


def ingest_conversation(memory: Any, conv: Conversation, cube_id: str) -> tuple[int, float]:
    """Write a conversation into its own cube with `Memory.ingest(conversations=...)` (one entry per session).
    Returns (turns written, seconds)."""
    assert conv.raw is not None
    memory.create_cube(cube_id, user_id=EVAL_USER, name=conv.sample_id)
    start = time.perf_counter()
    out = memory.ingest(user_id=EVAL_USER, cube_id=cube_id, conversations=locomo_ingest_input(conv.raw))
    if out["summary"].get("errors"):
        raise RuntimeError(f"ingest of {conv.sample_id} failed: {out['results']}")
    return int(out["summary"].get("added", 0)), time.perf_counter() - start


def replay_through_chat(memory: Any, chat: Any, conv: Conversation, cube_id: str) -> tuple[int, float]:
    """Replay a conversation turn by turn through the chat graph, as an agent that listens to a conversation
    would receive it: one thread per session, each turn a `HumanMessage` named by its speaker, with its dia_id as
    message id and the session date as its timestamp. Returns (turns, seconds)."""
    from langchain_core.messages import HumanMessage

    from hippograph.nodes.state import ChatContext

    assert conv.raw is not None
    memory.create_cube(cube_id, user_id=EVAL_USER, name=f"{conv.sample_id} (chat)")
    start, turns = time.perf_counter(), 0
    for session in conv.raw.sessions:
        session_key = f"{conv.sample_id}:{session.session_id}"
        context = ChatContext(user_id=EVAL_USER, cube_ids=[cube_id], write_cube_id=cube_id, session_id=session_key,
                              top_k=10, threshold=0.0)
        config = {"configurable": {"thread_id": f"{cube_id}/{session_key}"}}
        for turn in session.turns:
            if not (turn.content or "").strip():
                continue
            extra = {"timestamp": session.date_time, **({"blip_caption": turn.blip_caption}
                                                         if turn.blip_caption else {})}
            message = HumanMessage(content=turn.content, name=turn.speaker, id=turn.dia_id, additional_kwargs=extra)
            chat.invoke({"messages": [message]}, config, context=context)
            turns += 1
    return turns, time.perf_counter() - start


class MemoryRetriever:
    """Ask `Memory.search` in one cube; map the memories it returns to their dia_ids (and keep them for QA)."""

    def __init__(self, memory: Any, cube_id: str) -> None:
        self.memory, self.cube_id = memory, cube_id
        self.last_hits: list[Any] = []

    def __call__(self, query: str, k: int) -> list[str]:
        self.last_hits = self.memory.search(query, user_id=EVAL_USER, cube_ids=[self.cube_id], top_k=k)
        return dia_ids(self.last_hits)


def dia_ids(hits: Sequence[Any]) -> list[str]:
    return [ref.ref for hit in hits for ref in hit.source_refs[:1] if ref.kind == "turn"]


HIPPOGRAPH_SYSTEMS = ("hippograph", "hippograph_chat")
ALL_SYSTEMS = (*HIPPOGRAPH_SYSTEMS, "bm25", "dense", "langgraph_inmemory")
#: Peers that run when their optional extra is installed (`pip install -e ".[peers]"`).
PEER_SYSTEMS = ("mem0",)


def default_systems() -> tuple[str, ...]:
    import importlib.util

    return ALL_SYSTEMS + tuple(p for p in PEER_SYSTEMS if importlib.util.find_spec(p) is not None)


def _session_of_dia(dia_id: str) -> str:
    """LoCoMo dia_ids are `D<session>:<turn>`: the session is the part before the colon."""
    return dia_id.split(":", 1)[0]


def run_locomo(
    data: str | Path,
    out_dir: str | Path | None = None,
    *,
    backend: str = "embedded",
    ks: Sequence[int] = DEFAULT_KS,
    limit: int | None = None,
    samples: Sequence[str] | None = None,
    systems: Sequence[str] | None = None,
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

    from hippograph.evals.baselines import (
        BM25Baseline,
        CachedEmbeddings,
        DenseBaseline,
        InMemoryStoreBaseline,
        Mem0Baseline,
    )
    from hippograph.graphs.chat import build_chat_graph
    from hippograph.stores.embedders import MiniLMEmbeddings

    seed_everything()
    systems = tuple(systems or default_systems())
    ks = sorted(set(int(k) for k in ks))
    kmax = max(ks)
    convs = load_locomo(data, limit=limit, samples=samples)
    embeddings = embeddings or CachedEmbeddings(MiniLMEmbeddings())
    results = {name: SystemResult(name) for name in systems}
    tmp = tempfile.TemporaryDirectory(prefix="hippograph-locomo-") if work_dir is None else None
    root = Path(work_dir or tmp.name)  # type: ignore[union-attr]
    memory = open_memory(root / "hippograph", backend=backend, embeddings=embeddings) \
        if set(systems) & set(HIPPOGRAPH_SYSTEMS) else None
    chat = build_chat_graph(memory.services) if memory is not None and "hippograph_chat" in systems else None
    model: BaseChatModel | None = chat_model or (memory.services.chat_model if memory is not None else None)
    qa = QAScores() if model is not None and "hippograph" in systems else None
    total_questions = sum(len(scored_questions(c)) for c in convs)
    bar = tqdm(total=total_questions * len(systems), desc="locomo", unit="q", disable=not progress)
    stats = {"dropped_evidence": 0, "questions_without_evidence": 0}
    try:
        for conv in convs:
            for key in stats:
                stats[key] += conv.stats.get(key, 0)
            questions = scored_questions(conv)
            docs = [(t.dia_id, turn_text(t)) for t in conv.turns]
            for name in systems:
                bar.set_postfix_str(f"{conv.sample_id} {name}")
                result = results[name]
                retrieve: Retriever
                start = time.perf_counter()
                if name == "hippograph":
                    _, seconds = ingest_conversation(memory, conv, cube_for(conv))
                    retrieve = MemoryRetriever(memory, cube_for(conv))
                elif name == "hippograph_chat":
                    _, seconds = replay_through_chat(memory, chat, conv, cube_for(conv, "-chat"))
                    retrieve = MemoryRetriever(memory, cube_for(conv, "-chat"))
                else:
                    if name == "bm25":
                        retrieve = BM25Baseline(docs).retrieve
                    elif name == "dense":
                        retrieve = DenseBaseline(docs, embeddings).retrieve
                    elif name == "langgraph_inmemory":
                        retrieve = InMemoryStoreBaseline(docs, embeddings, namespace=conv.sample_id).retrieve
                    elif name == "mem0":
                        retrieve = Mem0Baseline(docs, embeddings, namespace=conv.sample_id,
                                                work_dir=str(root)).retrieve
                    else:
                        raise ValueError(f"unknown system {name!r}")
                    seconds = time.perf_counter() - start
                result.ingest_seconds += seconds
                result.ingest_turns += len(conv.turns)
                for q in questions:
                    ask(result, retrieve, q.question, kmax, category=CATEGORY_NAMES[q.category],
                        evidence=q.evidence, session_of=_session_of_dia)
                    if qa is not None and model is not None and name == "hippograph":
                        assert isinstance(retrieve, MemoryRetriever)
                        prediction = answer(model, q.question, retrieve.last_hits)
                        qa.add(CATEGORY_NAMES[q.category], token_f1(prediction, q.answer),
                               judge(model, q.question, q.answer, prediction))
                    bar.update(1)
    finally:
        bar.close()
        if memory is not None:
            memory.close()
        if tmp is not None:
            tmp.cleanup()
    report: dict[str, Any] = {
        "questions": total_questions,
        "systems": {name: results[name].summary(ks) for name in systems},
        "dataset": {"path": str(data), "conversations": [c.sample_id for c in convs],
                    "turns": sum(len(c.turns) for c in convs), **stats},
        "config": {"backend": backend, "ks": ks, "embedder": "all-MiniLM-L6-v2 (int8 ONNX)", "seed": SEED,
                   "write_path": {"hippograph": "Memory.ingest(conversations=...)",
                                  "hippograph_chat": "chat graph, one turn per run"},
                   "read_path": "Memory.search (default stores; returns memories, no preference step)"},
        "qa": qa.summary(_model_name(model)) if qa is not None else
        {"skipped": True, "reason": "no chat model configured (HIPPOGRAPH_CHAT_MODEL); retrieval only"},
    }
    if out_dir is not None:
        from hippograph.evals.report import write_report

        write_report(report, Path(out_dir), name="locomo", title="LoCoMo evidence recall")
    return report


def _model_name(model: Any) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)


# -- ablations ----------------------------------------------------------------------------------------------


def _cfg(**changes: Any) -> RecallConfig:
    from hippograph.stores.recall_config import SignalWeights

    weights = SignalWeights(**changes.pop("weights", {}))
    return RecallConfig(weights=weights, **changes)


#: Plain hybrid recall over raw turns: no key, flat RRF, no graph, no propagation, no question penalty, no
#: speaker mark.
_PLAIN: dict[str, Any] = {"rrf_k": 60, "weights": {"vector": 1.0, "graph": 0.0}, "expand_seeds": 0,
                          "propagate": 0.0, "question_penalty": 1.0, "speaker_boost": 0.0,
                          "expand_window": 1, "propagate_window": 1}
_SHARP: dict[str, Any] = {**_PLAIN, "rrf_k": 5, "weights": {"vector": 0.8, "graph": 0.0}}
_GRAPH: dict[str, Any] = {**_SHARP, "weights": {"vector": 0.8, "graph": 0.1}, "expand_seeds": 5}
_PROPAGATE: dict[str, Any] = {**_GRAPH, "propagate": 0.6}
_QUESTIONS: dict[str, Any] = {**_PROPAGATE, "question_penalty": 0.5}
_WIDE: dict[str, Any] = {**_QUESTIONS, "expand_window": 2, "propagate_window": 2}

#: Cumulative steps from plain hybrid recall over raw turns to hippograph's defaults; each row adds one idea:
#: (label, the turn key the memories were written with (`Settings.turn_key`), the `RecallConfig` of the search).
ABLATION_STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("dense + BM25, RRF k=60, raw turns", "none", _PLAIN),
    ("+ key: speaker and time", "speaker_date", _PLAIN),
    ("+ key: the turn it replies to", "full", _PLAIN),
    ("+ sharper fusion (RRF k=5, dense weight 0.8)", "full", _SHARP),
    ("+ graph neighbours of the top 5 seeds (weight 0.1)", "full", _GRAPH),
    ("+ adjacent-turn score propagation 0.6", "full", _PROPAGATE),
    ("+ remembered questions ranked at half score", "full", _QUESTIONS),
    ("+ neighbours and propagation within 2 turns", "full", _WIDE),
    ("+ speaker mark: turns of the person the query names x2 (= default)", "full", {}),
    ("+ MMR lambda 0.8 (not kept)", "full", {"mmr_lambda": 0.8}),
]


class SearchGraphRetriever:
    """Ask the search graph in one cube with a given `RecallConfig` (how an ablation row searches)."""

    def __init__(self, graph: Any, cube_id: str, cfg: RecallConfig) -> None:
        self.graph, self.cube_id, self.cfg = graph, cube_id, cfg

    def __call__(self, query: str, k: int) -> list[str]:
        from hippograph.nodes.state import ChatContext

        context = ChatContext(user_id=EVAL_USER, cube_ids=[self.cube_id], top_k=k, threshold=0.0, min_keep=0,
                              ingest=False, recall=self.cfg)
        return dia_ids(self.graph.invoke({"query": query}, context=context).get("memories", []))


def run_ablations(data: str | Path, *, ks: Sequence[int] = DEFAULT_KS, limit: int | None = None,
                  samples: Sequence[str] | None = None, work_dir: str | Path | None = None,
                  progress: bool = True, embeddings: Any = None) -> list[dict[str, Any]]:
    """Recall@k and session_any@k of each ablation step. Each turn-key level is written once through
    `Memory.ingest`; each step asks the search graph with its own `RecallConfig` (`ChatContext.recall`)."""
    import tempfile

    from tqdm import tqdm

    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.graphs.search import build_search_graph
    from hippograph.stores.embedders import MiniLMEmbeddings

    seed_everything()
    ks = sorted(set(int(k) for k in ks))
    convs = load_locomo(data, limit=limit, samples=samples)
    embeddings = embeddings or CachedEmbeddings(MiniLMEmbeddings())
    tmp = tempfile.TemporaryDirectory(prefix="hippograph-ablate-") if work_dir is None else None
    root = Path(work_dir or tmp.name)  # type: ignore[union-attr]
    questions = [(conv, q) for conv in convs for q in scored_questions(conv)]
    memories: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        for label, turn_key, changes in tqdm(ABLATION_STEPS, desc="ablations", disable=not progress):
            if turn_key not in memories:
                memories[turn_key] = open_memory(root / f"ablate-{turn_key}", embeddings=embeddings,
                                                 turn_key=turn_key)
                for conv in convs:
                    ingest_conversation(memories[turn_key], conv, cube_for(conv))
            memory = memories[turn_key]
            graph = build_search_graph(memory.services)
            cfg = _cfg(**changes)
            result = SystemResult(label)
            for conv, q in questions:
                ask(result, SearchGraphRetriever(graph, cube_for(conv), cfg), q.question, max(ks),
                    category=CATEGORY_NAMES[q.category], evidence=q.evidence, session_of=_session_of_dia)
            summary = result.summary(ks)
            rows.append({"step": label, "turn_key": turn_key, "recall_config": cfg.model_dump(),
                         **{f"recall@{k}": summary[f"recall@{k}"] for k in ks},
                         **{f"session_any@{k}": summary[f"session_any@{k}"] for k in ks}})
    finally:
        for memory in memories.values():
            memory.close()
        if tmp is not None:
            tmp.cleanup()
    return rows


def ablation_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    ks = [k for k in rows[0] if k.startswith("recall@")]
    lines = ["| step | " + " | ".join(f"R@{k.split('@')[1]}" for k in ks) + " | ΔR@10 | session_any@5 |",
             "|---|" + "---|" * (len(ks) + 2)]
    previous = None
    for row in rows:
        r10 = row.get("recall@10", 0.0)
        delta = "" if previous is None else f"{r10 - previous:+.3f}"
        lines.append(f"| {row['step']} | " + " | ".join(f"{row[k]:.3f}" for k in ks)
                     + f" | {delta} | {row.get('session_any@5', 0.0):.3f} |")
        if "not kept" not in row["step"]:
            previous = r10
    return "\n".join(lines) + "\n"
