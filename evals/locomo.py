"""LoCoMo: load conversations, ingest them as turn memories, score turn-level evidence recall@k.

A LoCoMo sample has `conversation` (`speaker_a`, `speaker_b`, `session_N` turn lists, `session_N_date_time`) and
`qa` (`question`, `answer`, `evidence` dia_ids, `category`). Evidence strings are parsed leniently
(`"D8:6; D9:17"` -> two ids, `"D30:05"` -> `D30:5`); ids that point at no turn are dropped and counted.

Recall@k of a question = share of its evidence dia_ids found among the dia_ids the top-k memories came from.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stores.models import MemoryItem, SourceRef, content_hash
from stores.write import stable_id

#: The categories the usual protocol scores (5 = adversarial, no evidence answer).
SCORED_CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
DEFAULT_KS = (5, 10, 20)
SEED = 7

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_DIA = re.compile(r"D\s*(\d+)\s*:\s*(\d+)", re.IGNORECASE)


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


def parse_evidence(raw: Any) -> tuple[list[str], int]:
    """Evidence (list or string) -> normalised dia_ids (`D<session>:<turn>`, no leading zeros) and the number of
    entries that held no id at all (`"D"`, empty). Ids pointing to no turn are counted by the loader."""
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    ids: list[str] = []
    dropped = 0
    for entry in items:
        found = _DIA.findall(str(entry))
        if not found:
            dropped += 1
        ids.extend(f"D{int(s)}:{int(t)}" for s, t in found)
    return list(dict.fromkeys(ids)), dropped


def _conversation(sample: dict[str, Any], position: int) -> Conversation:
    conv = sample.get("conversation") or {}
    speakers = (str(conv.get("speaker_a", "A")), str(conv.get("speaker_b", "B")))
    sessions = sorted(
        (int(m.group(1)), key) for key in conv if (m := _SESSION_KEY.match(key)) and isinstance(conv[key], list)
    )
    turns: list[Turn] = []
    dates: dict[int, str] = {}
    for number, key in sessions:
        date = str(conv.get(f"{key}_date_time") or "")
        dates[number] = date
        for index, raw in enumerate(conv[key]):
            text = str(raw.get("text") or "").strip()
            caption = str(raw.get("blip_caption") or "").strip()
            if not text and not caption:
                continue
            dia = _DIA.findall(str(raw.get("dia_id", "")))
            dia_id = f"D{int(dia[0][0])}:{int(dia[0][1])}" if dia else f"D{number}:{index + 1}"
            turns.append(Turn(dia_id=dia_id, speaker=str(raw.get("speaker") or ""), text=text, session=number,
                              index=index, date=date, caption=caption))
    known = {t.dia_id for t in turns}
    questions: list[Question] = []
    stats = {"malformed_evidence": 0, "unknown_evidence": 0, "questions_without_evidence": 0}
    for qa in sample.get("qa") or []:
        ids, malformed = parse_evidence(qa.get("evidence"))
        valid = [i for i in ids if i in known]
        unknown = len(ids) - len(valid)
        stats["malformed_evidence"] += malformed
        stats["unknown_evidence"] += unknown
        try:
            category = int(qa.get("category", 0))
        except (TypeError, ValueError):
            category = 0
        answer = qa.get("answer", qa.get("adversarial_answer", ""))
        question = Question(question=str(qa.get("question") or ""), answer=str(answer), category=category,
                            evidence=valid, dropped_evidence=malformed + unknown)
        if not question.evidence and category in SCORED_CATEGORIES:
            stats["questions_without_evidence"] += 1
        questions.append(question)
    sample_id = str(sample.get("sample_id") or f"conv-{position}")
    return Conversation(sample_id=sample_id, speakers=speakers, turns=turns, questions=questions,
                        session_dates=dates, stats=stats)


def load_locomo(path: str | Path, *, limit: int | None = None, samples: Sequence[str] | None = None
                ) -> list[Conversation]:
    """Every conversation of a LoCoMo-format JSON file (a list of samples, or one sample)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = [data]
    convs = [_conversation(sample, i) for i, sample in enumerate(data)]
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
        start = time.perf_counter()
        got = retrieve(q.question, k)
        result.latencies_ms.append((time.perf_counter() - start) * 1000.0)
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


def graph_retriever(graph: Any, cube_id: str) -> Retriever:
    """Ask the compiled `search` graph; map the memories it returns to their dia_ids."""
    from graphs.state import ChatContext

    def retrieve(query: str, k: int) -> list[str]:
        context = ChatContext(user_id=EVAL_USER, cube_ids=[cube_id], top_k=k, threshold=0.0, min_keep=0,
                              ingest=False)
        out = graph.invoke({"query": query}, context=context)
        return [ref.ref for hit in out.get("memories", []) for ref in hit.source_refs if ref.kind == "turn"]

    return retrieve


ALL_SYSTEMS = ("hippograph", "bm25", "dense", "langgraph_inmemory")


def run_locomo(
    data: str | Path,
    out_dir: str | Path | None = None,
    *,
    backend: str = "embedded",
    ks: Sequence[int] = DEFAULT_KS,
    limit: int | None = None,
    samples: Sequence[str] | None = None,
    systems: Sequence[str] = ALL_SYSTEMS,
    context: str = "full",
    work_dir: str | Path | None = None,
    progress: bool = True,
    embeddings: Any = None,
) -> dict[str, Any]:
    """The whole LoCoMo retrieval eval. Returns (and writes, with `out_dir`) the JSON report."""
    import tempfile

    from tqdm import tqdm

    from evals.baselines import BM25Baseline, CachedEmbeddings, DenseBaseline, InMemoryStoreBaseline
    from graphs.search import build_search_graph
    from stores.embedders import MiniLMEmbeddings

    seed_everything()
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
    total_questions = sum(len(scored_questions(c)) for c in convs)
    bar = tqdm(total=total_questions * len(systems), desc="locomo", unit="q", disable=not progress)
    stats = {"malformed_evidence": 0, "unknown_evidence": 0, "questions_without_evidence": 0}
    try:
        for conv in convs:
            for key in stats:
                stats[key] += conv.stats.get(key, 0)
            questions = scored_questions(conv)
            for name in systems:
                bar.set_postfix_str(f"{conv.sample_id} {name}")
                result = results[name]
                start = time.perf_counter()
                if name == "hippograph":
                    cube_id, _, _ = ingest_conversation(services, conv, context=context)
                    retrieve = graph_retriever(graph, cube_id)
                elif name == "bm25":
                    retrieve = BM25Baseline(conv.turns).retrieve
                elif name == "dense":
                    retrieve = DenseBaseline(conv.turns, embeddings).retrieve
                elif name == "langgraph_inmemory":
                    retrieve = InMemoryStoreBaseline(conv.turns, embeddings, namespace=conv.sample_id).retrieve
                else:
                    raise ValueError(f"unknown system {name!r}")
                result.ingest_seconds += time.perf_counter() - start
                result.ingest_turns += len(conv.turns)
                for q in questions:
                    run_questions(name, [q], retrieve, kmax, result)
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
        "qa": {"skipped": True, "reason": "no chat model configured (HIPPOGRAPH_CHAT_MODEL); retrieval only"},
    }
    if out_dir is not None:
        from evals.report import write_report

        write_report(report, Path(out_dir), name="locomo", title="LoCoMo evidence recall")
    return report
