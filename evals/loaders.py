"""Loaders for conversation benchmarks (LoCoMo, LongMemEval) that ingest through the ingest graph.

The data is read from the shared data dir (`$HIPPOGRAPH_SHARED_DATA`, else `<repo>/../shared/data`); it is
never copied into the repository (LoCoMo is CC BY-NC 4.0).

For evals::

    from hippograph.evals.loaders import load_locomo, ingest_locomo_conversation
    conversations = load_locomo()                       # list[LocomoConversation]
    conv = conversations[0]
    out = ingest_locomo_conversation(services, conv, user_id="eval", cube_id="eval.conv-26")
    out["dia_to_memory"]["D1:3"]                        # memory id of turn D1:3
    for qa in conv.qa: qa.question, qa.answer, qa.evidence (clean dia_ids), qa.category

Every turn becomes one memory through the ingest graph (conversation path): text `Speaker: words` (image turns
add `[shares a photo: <caption>]`), key `Speaker › <session date> › session_N`, `session_id` = `session_N`,
`turn_index` = position in the session, NEXT edges between turns, PARENT to a session topic node, and on every
memory `metadata` (and `source_refs[0].extra`) with `speaker`, `timestamp` (the session date), `session_id`,
`conversation_id`, `dia_id`. Hits map back to evidence with `memory_dia_id(item)`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from hippograph.evals.common import shared_data_dir
from hippograph.stores.models import MemoryItem
from hippograph.stores.services import Services

_DIA = re.compile(r"D(\d+):(\d+)")


# -- LoCoMo ---------------------------------------------------------------------------------------------------


@dataclass
class LocomoTurn:
    dia_id: str
    speaker: str
    text: str
    img_url: str | None = None
    blip_caption: str | None = None

    @property
    def content(self) -> str:
        """What is remembered: the words, plus the photo caption for image turns."""
        return self.text + (f" [shares a photo: {self.blip_caption}]" if self.blip_caption else "")


@dataclass
class LocomoSession:
    index: int
    session_id: str
    """`session_<index>`."""
    date_time: str | None
    turns: list[LocomoTurn] = field(default_factory=list)


@dataclass
class LocomoQA:
    question: str
    answer: str | None
    """Gold answer as a string (ints converted); None for most adversarial (category 5) questions."""
    evidence: list[str]
    """Clean dia_ids (`D<session>:<turn>`) that exist in the conversation."""
    category: int
    adversarial_answer: str | None = None
    raw_evidence: list[str] = field(default_factory=list)


@dataclass
class LocomoConversation:
    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: list[LocomoSession]
    qa: list[LocomoQA]
    dropped_evidence: int = 0
    """Evidence strings that were malformed or named no turn (parsed leniently and counted)."""

    @property
    def turns(self) -> list[LocomoTurn]:
        return [t for s in self.sessions for t in s.turns]


def parse_evidence(raw: Any, known: set[str] | None = None) -> tuple[list[str], int]:
    """Lenient evidence parsing: `"D8:6; D9:17"` -> two ids, `"D30:05"` -> `D30:5`, `"D"` dropped; ids not in
    `known` (when given) dropped. Returns (ids, how many evidence references were dropped)."""
    items = raw if isinstance(raw, list) else [raw]
    found: list[str] = []
    dropped = 0
    for entry in items:
        matches = _DIA.findall(str(entry))
        if not matches:
            dropped += 1
            continue
        for session, turn in matches:
            dia = f"D{int(session)}:{int(turn)}"
            if known is not None and dia not in known:
                dropped += 1
            elif dia not in found:
                found.append(dia)
    return found, dropped


def load_locomo(path: str | Path | None = None) -> list[LocomoConversation]:
    """Parse a LoCoMo file (default: `<shared data>/locomo/locomo10_dev.json`). Sessions come from the
    `session_N` keys (not the date keys); evidence is cleaned with `parse_evidence`."""
    path = Path(path) if path else shared_data_dir() / "locomo" / "locomo10_dev.json"
    out: list[LocomoConversation] = []
    for sample in json.loads(Path(path).read_text(encoding="utf-8")):
        conv = sample["conversation"]
        numbers = sorted(int(m.group(1)) for k in conv if (m := re.fullmatch(r"session_(\d+)", k)))
        sessions = []
        for n in numbers:
            turns = [LocomoTurn(dia_id=t["dia_id"], speaker=t["speaker"], text=t.get("text", ""),
                                img_url=(t.get("img_url") or [None])[0] if isinstance(t.get("img_url"), list)
                                else t.get("img_url"), blip_caption=t.get("blip_caption"))
                     for t in conv[f"session_{n}"]]
            sessions.append(LocomoSession(index=n, session_id=f"session_{n}",
                                          date_time=conv.get(f"session_{n}_date_time"), turns=turns))
        known = {t.dia_id for s in sessions for t in s.turns}
        qa, dropped = [], 0
        for q in sample.get("qa", []):
            evidence, lost = parse_evidence(q.get("evidence", []), known)
            dropped += lost
            answer = q.get("answer")
            qa.append(LocomoQA(question=q["question"], answer=None if answer is None else str(answer),
                               evidence=evidence, category=int(q.get("category", 0)),
                               adversarial_answer=q.get("adversarial_answer"),
                               raw_evidence=[str(e) for e in q.get("evidence", [])]))
        out.append(LocomoConversation(sample_id=sample["sample_id"], speaker_a=conv["speaker_a"],
                                      speaker_b=conv["speaker_b"], sessions=sessions, qa=qa,
                                      dropped_evidence=dropped))
    return out


def locomo_ingest_input(conv: LocomoConversation) -> list[dict[str, Any]]:
    """The `conversations` input of the ingest graph for one LoCoMo conversation: one entry per session."""
    return [{
        "conversation_id": conv.sample_id,
        "session_id": session.session_id,
        "session_date": session.date_time,
        "messages": [{"speaker": t.speaker, "text": t.content, "dia_id": t.dia_id, "timestamp": session.date_time,
                      "img_url": t.img_url, "blip_caption": t.blip_caption} for t in session.turns],
    } for session in conv.sessions]


# -- LongMemEval ----------------------------------------------------------------------------------------------


@dataclass
class LongMemEvalItem:
    question_id: str
    question_type: str
    question: str
    answer: str
    question_date: str | None
    sessions: list[dict[str, Any]]
    """`{"session_id", "date", "turns": [{"role", "content", "has_answer"}]}` in haystack order."""
    answer_session_ids: list[str]


def load_longmemeval(path: str | Path | None = None) -> list[LongMemEvalItem]:
    """Parse a LongMemEval file in the original schema (default: `<shared data>/longmemeval/
    longmemeval_sample2.json`)."""
    path = Path(path) if path else shared_data_dir() / "longmemeval" / "longmemeval_sample2.json"
    items = []
    for raw in json.loads(Path(path).read_text(encoding="utf-8")):
        ids = raw.get("haystack_session_ids") or []
        dates = raw.get("haystack_dates") or []
        sessions = [{"session_id": str(ids[i]) if i < len(ids) else f"session_{i}",
                     "date": dates[i] if i < len(dates) else None, "turns": list(turns)}
                    for i, turns in enumerate(raw.get("haystack_sessions") or [])]
        items.append(LongMemEvalItem(
            question_id=str(raw["question_id"]), question_type=str(raw.get("question_type", "")),
            question=raw["question"], answer=str(raw.get("answer", "")), question_date=raw.get("question_date"),
            sessions=sessions, answer_session_ids=[str(s) for s in raw.get("answer_session_ids") or []]))
    return items


def longmemeval_ingest_input(item: LongMemEvalItem) -> list[dict[str, Any]]:
    """The `conversations` input of the ingest graph for one LongMemEval question's haystack. Turn dia_ids are
    `<session_id>:<position>`; `has_answer` is kept in each memory's metadata."""
    return [{
        "conversation_id": item.question_id,
        "session_id": session["session_id"],
        "session_date": session["date"],
        "messages": [{"speaker": t.get("role", "user"), "text": t.get("content", ""),
                      "dia_id": f"{session['session_id']}:{i}", "timestamp": session["date"],
                      "has_answer": bool(t.get("has_answer", False))}
                     for i, t in enumerate(session["turns"])],
    } for session in item.sessions]


# -- ingestion ------------------------------------------------------------------------------------------------


def _graph(target: Services | CompiledStateGraph) -> CompiledStateGraph[Any, Any, Any, Any]:
    if isinstance(target, Services):
        from hippograph.graphs.ingest import build_ingest_graph

        return build_ingest_graph(target)
    return target


def ingest_conversations(target: Services | CompiledStateGraph, conversations: list[dict[str, Any]], *,
                         user_id: str = "default", cube_id: str | None = None) -> dict[str, Any]:
    """Run the ingest graph on `conversations` entries. Returns `results`, `summary` and `dia_to_memory`
    (dia_id -> memory id). Idempotent: re-ingesting the same sessions adds nothing."""
    from hippograph.graphs.ingest import IngestContext

    out = _graph(target).invoke({"conversations": conversations},
                                context=IngestContext(user_id=user_id, cube_id=cube_id))
    dia_to_memory: dict[str, str] = {}
    for entry, row in zip(conversations, sorted(out["results"], key=lambda r: r["order"]), strict=True):
        texts = [m for m in entry["messages"] if str(m.get("text") or m.get("content") or "").strip()]
        for message, memory_id in zip(texts, row.get("memory_ids", []), strict=False):
            dia_to_memory[str(message["dia_id"])] = memory_id
    return {"results": out["results"], "summary": out["summary"], "dia_to_memory": dia_to_memory}


def ingest_locomo_conversation(target: Services | CompiledStateGraph, conv: LocomoConversation, *,
                               user_id: str = "default", cube_id: str | None = None) -> dict[str, Any]:
    """Ingest every session of a LoCoMo conversation (one memory per turn) through the ingest graph.

    `target` is a `Services` (a graph is compiled) or an already compiled ingest graph (reuse it across
    conversations). Use one cube per conversation for the usual protocol. Returns `{"results", "summary",
    "dia_to_memory"}`; the memories also carry their dia_id in `metadata["dia_id"]`."""
    return ingest_conversations(target, locomo_ingest_input(conv), user_id=user_id, cube_id=cube_id)


def ingest_longmemeval_item(target: Services | CompiledStateGraph, item: LongMemEvalItem, *,
                            user_id: str = "default", cube_id: str | None = None) -> dict[str, Any]:
    """Ingest one LongMemEval question's haystack sessions; same return value as `ingest_locomo_conversation`."""
    return ingest_conversations(target, longmemeval_ingest_input(item), user_id=user_id, cube_id=cube_id)


def memory_dia_id(item: MemoryItem) -> str | None:
    """The dia_id a conversation memory came from (for evidence recall)."""
    value = item.metadata.get("dia_id")
    return str(value) if value is not None else None
