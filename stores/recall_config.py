"""`RecallConfig`: every tuning knob of recall (retrieve_tree + rerank) in one typed, documented place.

Defaults are the product's. A deployment sets them in `Settings.recall` (env `HIPPOGRAPH_RECALL='{"rrf_k": 10}'`);
one run overrides them with `ChatContext(recall=RecallConfig(...))`; the LoCoMo ablations pass one config per row.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SignalWeights(BaseModel):
    """Weight of each recall signal in the fusion. Graph neighbours and working memory support, they do not lead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vector: float = Field(default=0.8, ge=0.0)
    bm25: float = Field(default=1.0, ge=0.0)
    graph: float = Field(default=0.1, ge=0.0)
    working: float = Field(default=0.3, ge=0.0)
    entity: float = Field(default=0.3, ge=0.0)
    """Memories naming the query's entities (entity graph, `MENTIONS` edges); 0 = off. 0.3: LoCoMo dev R@10
    +0.005, open-domain +0.053 (evals/results/recall.md); 0.5 and a 20-memory pool were no better."""
    prf: float = Field(default=0.0, ge=0.0)
    """Second recall round (pseudo-relevance feedback): memories naming the entities of the first round's best
    seeds (multi-hop through the entity graph); 0 = off (the default: +0.005 R@10 alone, -0.004 on top of the
    entity signal)."""
    time: float = Field(default=0.5, ge=0.0)
    """Memories that happened inside the period the query names ("in May 2023", "last year", relative to
    `ChatContext.as_of`); 0 = off. Costs nothing when the query names no period."""

    def of(self, signal: str) -> float:
        return float(getattr(self, signal, 0.0))


class RecallConfig(BaseModel):
    """How recall finds and orders memories (see `nodes/retrieve_tree.py`, `nodes/rerank.py`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    pool_factor: int = Field(default=2, ge=1)
    """Candidates each signal contributes, as a multiple of top_k (recall needs a deeper pool than the answer)."""
    min_pool: int = Field(default=40, ge=1)
    """...and never fewer than this."""
    expand_seeds: int = Field(default=5, ge=0)
    """How many of the best seeds get their graph neighbours (adjacent turns, parents, children); 0 = off."""
    expand_window: int = Field(default=2, ge=0)
    """Adjacent turns within this distance of a seed count as its neighbours (2: a fact told over a question, its
    answer and a follow-up; LoCoMo dev R@10 +0.003 over 1, with `propagate_window` 2)."""
    working_memory_limit: int = Field(default=20, ge=0)
    """Working-memory items of the current session added as a signal."""
    rrf_k: int = Field(default=5, ge=0)
    """The k of reciprocal-rank fusion: small = the top ranks of each signal dominate."""
    weights: SignalWeights = Field(default_factory=SignalWeights)
    question_penalty: float = Field(default=0.5, ge=0.0, le=1.0)
    """Fused score multiplier of a remembered question (tag `question`): it resembles new questions but answers
    none of them. 1 = off."""
    propagate: float = Field(default=0.6, ge=0.0)
    """Share of the best adjacent turn's fused score a turn inherits (a question and its answer, a story told over
    two turns); 0 = off."""
    propagate_window: int = Field(default=2, ge=1)
    """Turns within this distance pass their score on (2: LoCoMo dev R@10 0.758 -> 0.775, R@5 0.664 -> 0.678 over
    1; 3 is no better)."""
    speaker_boost: float = Field(default=1.0, ge=0.0)
    """A memory spoken by a person the query names ("what did Caroline research?") gets its fused score times
    (1 + boost); 0 = off. Role names (user, assistant, ...) never count as named. LoCoMo dev R@5 0.680 -> 0.723,
    R@10 0.778 -> 0.794, multi-hop R@10 0.427 -> 0.478 (0.25 and 0.5 were lower, 2.0 no better)."""
    mmr_lambda: float = Field(default=1.0, ge=0.0, le=1.0)
    """Maximal marginal relevance trade-off over the top `mmr_depth`: 1 = off (pure relevance, the default: MMR
    costs recall on LoCoMo, see evals/results/locomo_ablations.md)."""
    mmr_depth: int = Field(default=30, ge=1)
    questions_last: bool = True
    """Remembered questions (tag `question`) rank after every statement a content signal found: a question never
    outranks the statement that answers it (issue 12; LoCoMo dev R@10 -0.002, within noise). False = only
    `question_penalty`."""
    entity_pool: int = Field(default=10, ge=1)
    """Memories the entity signal (and the second round) contribute: only the best few, since rank fusion would
    otherwise turn a weak match (one common entity) into a rank as good as any other signal's."""
    prf_seeds: int = Field(default=3, ge=1)
    """How many of the first round's best memories seed the second round (`weights.prf`)."""
    prf_entities: int = Field(default=6, ge=1)
    """At most this many of the seeds' entities (most shared first) join the query's in the second round."""

    def pool(self, top_k: int) -> int:
        return max(self.min_pool, top_k * self.pool_factor)
