"""Near-duplicate control: decide whether a new memory is a duplicate, an update of an old one, or new.

Order of checks, cheapest first:
1. exact duplicate: same content hash (normalised text) -> `duplicate`, before any model call;
2. candidates: a datasketch MinHash LSH index over normalised character shingles (lexical near-duplicates)
   plus the nearest stored memories by embedding (paraphrases), both restricted to the same cube / user;
3. per candidate: MinHash Jaccard estimate and cosine similarity decide:
   - `update`: same statement shape, different value ("I have two cats" -> "I have three cats", "I love X" ->
     "I hate X"): high token overlap but each side has content words the other lacks, or a polarity flip.
     The caller supersedes the old memory (kept with `valid_to`).
   - `duplicate`: cosine >= `paraphrase_cosine` or Jaccard >= `dup_jaccard` (same information, other words).
   - `new` otherwise.

Measured with all-MiniLM-L6-v2: paraphrases of one fact sit at cosine 0.77-0.98 to their nearest
sibling (threshold 0.75);
"I live in Paris" vs "I live in Berlin now" 0.52, "two cats" vs "three cats" 0.94 (caught as `update` by the
value check, not as a duplicate), unrelated facts < 0.3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from datasketch import MinHash, MinHashLSH

from hippograph.stores.models import content_hash, normalise_text
from hippograph.stores.text import STOP_WORDS, WORD

Action = Literal["duplicate", "update", "new"]

_STOP = STOP_WORDS | frozenset(str.split(
    "all also am any because been being can could here just no not now really since some than then there these "
    "those too very would"
))
_NEGATORS = frozenset(str.split("not no never dont don't doesnt doesn't cannot cant can't without longer hate dislike "
                      "avoid refuse despise detest loathe"))
_CONTRACTIONS = [(re.compile(r"\b(\w+)n[’']t\b"), r"\1 not"), (re.compile(r"[’']m\b"), " am"),
                 (re.compile(r"[’']re\b"), " are"), (re.compile(r"[’']ve\b"), " have"),
                 (re.compile(r"[’']ll\b"), " will"), (re.compile(r"[’']d\b"), " would"),
                 (re.compile(r"[’']s\b"), "")]


def tokens(text: str) -> list[str]:
    norm = normalise_text(text)
    for pattern, repl in _CONTRACTIONS:
        norm = pattern.sub(repl, norm)
    return WORD.findall(norm)


def shingles(text: str, size: int = 5) -> set[str]:
    """Character shingles of the normalised token string (robust to punctuation, case and spacing)."""
    joined = " ".join(tokens(text))
    if len(joined) <= size:
        return {joined} if joined else set()
    return {joined[i : i + size] for i in range(len(joined) - size + 1)}


def minhash(text: str, num_perm: int = 128) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=7)
    for sh in shingles(text):
        m.update(sh.encode("utf-8"))
    return m


def stem(token: str) -> str:
    """A light suffix stripper: enough that "lives" / "living" / "lived" compare equal."""
    for suffix in ("ing", "ed", "es", "s"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: -len(suffix)]
    return token


def _polarity(toks: Iterable[str]) -> int:
    return -1 if any(t in _NEGATORS for t in toks) else 1


@dataclass
class Candidate:
    id: str
    text: str
    vector: np.ndarray | None = None
    content_hash: str = ""
    alias_of: str | None = None
    """Set for another wording of a stored memory: decisions point at the stored one."""

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = content_hash(self.text)


@dataclass
class DedupDecision:
    action: Action
    target_id: str | None = None
    cosine: float = 0.0
    jaccard: float = 0.0
    reason: str = ""


@dataclass
class NearDuplicateIndex:
    """MinHash LSH + vectors over a working set of memories (one cube's or one user's candidates)."""

    lsh_threshold: float = 0.5
    num_perm: int = 128
    paraphrase_cosine: float = 0.75
    dup_jaccard: float = 0.85
    update_overlap: float = 0.5
    update_min_cosine: float = 0.45
    _lsh: MinHashLSH = field(init=False, repr=False)
    _items: dict[str, Candidate] = field(default_factory=dict, repr=False)
    _hashes: dict[str, str] = field(default_factory=dict, repr=False)
    _minhashes: dict[str, MinHash] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._lsh = MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm)

    def __contains__(self, memory_id: str) -> bool:
        return memory_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, candidate: Candidate) -> None:
        if candidate.id in self._items:
            return
        m = minhash(candidate.text, self.num_perm)
        self._items[candidate.id] = candidate
        self._minhashes[candidate.id] = m
        self._hashes.setdefault(candidate.content_hash, candidate.id)
        self._lsh.insert(candidate.id, m)

    def remove(self, memory_id: str) -> None:
        for alias in [i for i, c in self._items.items() if c.alias_of == memory_id]:
            self.remove(alias)
        cand = self._items.pop(memory_id, None)
        if cand is None:
            return
        self._minhashes.pop(memory_id, None)
        if self._hashes.get(cand.content_hash) == memory_id:
            del self._hashes[cand.content_hash]
        self._lsh.remove(memory_id)

    def decide(self, text: str, vector: np.ndarray | Sequence[float] | None = None, *, top: int = 8
               ) -> DedupDecision:
        """duplicate / update / new for `text` against everything in the index."""
        h = content_hash(text)
        if h in self._hashes:
            hit = self._items.get(self._hashes[h])
            target = (hit.alias_of if hit is not None else None) or self._hashes[h]
            return DedupDecision("duplicate", target, 1.0, 1.0, "content hash")
        m = minhash(text, self.num_perm)
        ids = set(self._lsh.query(m))
        vec = None if vector is None else np.asarray(vector, dtype=np.float32)
        if vec is not None:
            with_vec = [(i, c.vector) for i, c in self._items.items() if c.vector is not None]
            if with_vec:
                matrix = np.stack([np.asarray(v, dtype=np.float32) for _, v in with_vec])
                sims = matrix @ vec
                for row in np.argsort(-sims)[:top]:
                    ids.add(with_vec[int(row)][0])
        new_toks = tokens(text)
        best: DedupDecision = DedupDecision("new")
        for cid in ids:
            cand = self._items[cid]
            jac = float(m.jaccard(self._minhashes[cid]))
            cos = float(np.dot(np.asarray(cand.vector, dtype=np.float32), vec)) \
                if vec is not None and cand.vector is not None else 0.0
            decision = classify_pair(new_toks, tokens(cand.text), cosine=cos, jaccard=jac, index=self)
            decision.target_id = cand.alias_of or cid
            if _rank(decision) > _rank(best):
                best = decision
        return best


_DEFAULT: list[NearDuplicateIndex] = []


def _default_index() -> NearDuplicateIndex:
    if not _DEFAULT:
        _DEFAULT.append(NearDuplicateIndex())
    return _DEFAULT[0]


def _rank(d: DedupDecision) -> tuple[int, float]:
    order = {"new": 0, "update": 1, "duplicate": 2}
    return (order[d.action], max(d.cosine, d.jaccard))


def classify_pair(new: Sequence[str], old: Sequence[str], *, cosine: float, jaccard: float,
                  index: NearDuplicateIndex | None = None) -> DedupDecision:
    """The decision for one (new, old) pair of token lists with their cosine and shingle Jaccard."""
    cfg = index or _default_index()
    a, b = {stem(t) for t in new}, {stem(t) for t in old}
    overlap = len(a & b) / max(1, len(a | b))
    only_new = {t for t in a - b if t not in _STOP and t not in _NEGATORS}
    only_old = {t for t in b - a if t not in _STOP and t not in _NEGATORS}
    flipped = _polarity(a) != _polarity(b)
    same_shape = overlap >= cfg.update_overlap and cosine >= cfg.update_min_cosine
    if flipped and overlap >= cfg.update_overlap * 0.6 and cosine >= cfg.update_min_cosine:
        return DedupDecision("update", None, cosine, jaccard, "polarity flip")
    if same_shape and only_new and only_old:
        return DedupDecision("update", None, cosine, jaccard, "changed value: " + ",".join(sorted(only_new))[:80])
    if jaccard >= cfg.dup_jaccard or cosine >= cfg.paraphrase_cosine:
        return DedupDecision("duplicate", None, cosine, jaccard, "near duplicate")
    return DedupDecision("new", None, cosine, jaccard, "")


def dedup_batch(
    texts: Sequence[str],
    vectors: np.ndarray,
    existing: Sequence[Candidate] = (),
    *,
    ids: Sequence[str] | None = None,
    index: NearDuplicateIndex | None = None,
) -> list[DedupDecision]:
    """Decide each text against `existing` and against the earlier texts of the same batch (in order).

    A text judged `new` or `update` joins the index, so the next paraphrase in the batch is its duplicate.
    """
    index = index or NearDuplicateIndex()
    for cand in existing:
        index.add(cand)
    out = []
    for pos, text in enumerate(texts):
        decision = index.decide(text, vectors[pos])
        out.append(decision)
        if decision.action == "duplicate" and decision.target_id is not None and decision.cosine < 1.0:
            index.add(Candidate(id=f"{decision.target_id}#alias{pos}", text=text, vector=vectors[pos],
                                alias_of=decision.target_id))
        elif decision.action != "duplicate":
            new_id = ids[pos] if ids is not None else f"batch:{pos}"
            if decision.action == "update" and decision.target_id is not None:
                index.remove(decision.target_id)
            index.add(Candidate(id=new_id, text=text, vector=vectors[pos]))
    return out
