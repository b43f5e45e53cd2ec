"""Question answering on top of retrieval, for evals that have gold answers (LoCoMo): a chat model answers from the
retrieved memories, then we score token F1 against the gold answer and ask the model, as a judge, whether the
answer is right (the "LLM-as-a-judge" accuracy mem0 and Zep report).

Only runs with a chat model (`HIPPOGRAPH_CHAT_MODEL`); without one, the eval says QA was skipped.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from hippograph.stores.models import SearchHit

ANSWER_SYSTEM = (
    "You answer questions about a long conversation between two people, using only the memories below. Each "
    "memory says who spoke and when. Resolve relative dates ('last week') against the memory's date. Answer with "
    "a short phrase (at most 10 words), no explanation. If the memories do not contain the answer, say "
    "'not mentioned'."
)
JUDGE_SYSTEM = (
    "You grade an answer to a question about a conversation. Compare the generated answer with the gold answer. "
    "Be generous: the same meaning in other words, or a date in another format, is CORRECT; a different fact, a "
    "missing key detail, or 'not mentioned' is WRONG. Reply with exactly one word: CORRECT or WRONG."
)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_VERDICT = re.compile(r"\b(CORRECT|WRONG)\b")


def normalise_answer(text: str) -> list[str]:
    """LoCoMo's answer normalisation: lower case, no punctuation, no articles, single spaces -> tokens."""
    text = str(text).lower().replace(",", " ")
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 between a predicted and a gold answer (multiset overlap of normalised tokens)."""
    pred, ref = normalise_answer(prediction), normalise_answer(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def memory_lines(hits: Sequence[SearchHit], *, limit: int = 10) -> str:
    return "\n".join(f"[{n}] {h.item.key + ': ' if h.item.key else ''}{h.text}" for n, h in enumerate(hits[:limit], 1))


def answer(model: BaseChatModel, question: str, hits: Sequence[SearchHit], *, limit: int = 10) -> str:
    reply = model.invoke([SystemMessage(ANSWER_SYSTEM),
                          HumanMessage(f"Memories:\n{memory_lines(hits, limit=limit)}\n\nQuestion: {question}")])
    return str(reply.content).strip()


def judge(model: BaseChatModel, question: str, gold: str, prediction: str) -> bool:
    """True when the judge says CORRECT (its first verdict word counts; anything else is WRONG)."""
    reply = model.invoke([SystemMessage(JUDGE_SYSTEM), HumanMessage(
        f"Question: {question}\nGold answer: {gold}\nGenerated answer: {prediction}")])
    found = _VERDICT.search(str(reply.content).upper())
    return found is not None and found.group(1) == "CORRECT"


@dataclass
class QAScores:
    """Per-question F1 and judge verdicts, by category."""

    rows: list[tuple[str, float, bool]] = field(default_factory=list)
    """(category name, token F1, judged correct)."""

    def add(self, category: str, f1: float, correct: bool) -> None:
        self.rows.append((category, f1, correct))

    def summary(self, model_name: str) -> dict[str, Any]:
        def scores(rows: list[tuple[str, float, bool]]) -> dict[str, Any]:
            n = len(rows)
            return {"questions": n, "f1": round(sum(r[1] for r in rows) / n, 4) if n else 0.0,
                    "judge_accuracy": round(sum(r[2] for r in rows) / n, 4) if n else 0.0}

        by_category = {c: scores([r for r in self.rows if r[0] == c]) for c in dict.fromkeys(r[0] for r in self.rows)}
        return {"skipped": False, "model": model_name, **scores(self.rows), "by_category": by_category}
