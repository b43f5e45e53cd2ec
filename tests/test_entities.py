"""Entity graph without an LLM (issue 12): normalisation, spaCy extraction, deferred enrichment, erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hippograph.nodes.enrich_entities import enrich_memories, schedule_memories
from hippograph.settings import Settings
from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.entities import EntityExtractor, normalise_entity, query_entity_names
from hippograph.stores.models import MemoryItem
from hippograph.stores.services import Services
from hippograph.stores.tree.embedded import EmbeddedTreeStore
from hippograph.stores.write import write_memories
from hippograph.worker import Worker

EMB = HashingEmbeddings(64)


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    return EntityExtractor()


@pytest.mark.parametrize(("mention", "name"), [
    ("Melanie's", "melanie"), ("the Grand Canyon", "grand canyon"), ("My  Sister’s", "sister"),
    ("LGBTQ", "lgbtq"), ("Café Nero", "café nero"),
])
def test_names_are_normalised(mention: str, name: str) -> None:
    assert normalise_entity(mention) == name


def test_query_names_are_content_ngrams_with_naive_singulars() -> None:
    names = query_entity_names("What do Ana's sister and her coach have in common with the kayaks?")
    assert {"ana", "sister", "coach", "ana sister", "kayaks", "kayak"} <= set(names)
    assert not {"what", "do", "her", "the"} & set(names)


def test_extractor_finds_people_places_proper_and_common_nouns(extractor: EntityExtractor) -> None:
    ana, melanie, lisbon = extractor.extract([
        "Ana's sister and her coach went to Paris",
        "Melanie's kids love the Grand Canyon trip last week",
        "I moved to Lisbon in May",
    ])
    assert {"ana", "sister", "coach", "paris"} <= {m.name for m in ana}
    assert {m.name: m.kind for m in melanie}["grand canyon"] == "FAC"
    assert {"melanie", "kid", "trip"} <= {m.name for m in melanie}  # "kids" by its lemma
    assert [m.name for m in lisbon] == ["lisbon"]  # "May" is a date, not an entity


def _turn(text: str, *, when: datetime, index: int) -> MemoryItem:
    return MemoryItem(user_id="u1", cube_id="c1", text=text, key="Ana", session_id="s1", turn_index=index,
                      created_at=when.timestamp())


def test_enrichment_links_entities_grounds_times_and_erasure_removes_them(
        tmp_path: Path, extractor: EntityExtractor) -> None:
    tree = EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=64)
    said = datetime(2023, 5, 8, 12, tzinfo=UTC)
    turns = [_turn("I went kayaking with Joe yesterday", when=said, index=0),
             _turn("Joe's sister lives in Lisbon", when=said, index=1),
             _turn("Nice weather", when=said, index=2)]
    ids, _ = write_memories(tree, EMB, turns)
    assert enrich_memories(tree, "c1", ids, extractor) == {"grounded": 1, "mentions": 5}
    assert enrich_memories(tree, "c1", ids, extractor) == {"grounded": 0, "mentions": 0}  # idempotent
    first = tree.get([ids[0]])[0]
    assert first.key == "Ana · 7 May 2023" and first.text == turns[0].text
    assert [h.id for h in tree.text_search("7 May 2023", cube_ids=["c1"])] == [ids[0]]
    assert tree.mentions(ids) == {ids[0]: ["joe"], ids[1]: ["joe", "lisbon", "sister"], ids[2]: ["weather"]}
    hits = tree.entity_search(query_entity_names("Where does Joe's sister live?"), cube_ids=["c1"])
    assert [h.id for h in hits] == [ids[1], ids[0]]  # joe + sister beats joe alone
    tree.delete([ids[1]], hard=True)
    assert tree.entity_search(["lisbon"], cube_ids=["c1"]) == []
    assert [h.id for h in tree.entity_search(["joe"], cube_ids=["c1"])] == [ids[0]]
    tree.close()


def test_ingest_schedules_a_deferred_job_that_the_worker_runs(tmp_path: Path) -> None:
    services = Services.from_settings(Settings(data_dir=tmp_path / "d", worker_in_process=False),
                                      embeddings=HashingEmbeddings(64))
    items = [MemoryItem(user_id="u1", cube_id="c1", text=t) for t in ("Ana met Joe in Porto", "Joe plays chess")]
    ids, _ = write_memories(services.tree, services.embeddings, items)
    assert services.tree.mentions(ids) == {}  # nothing on the write path
    jobs = schedule_memories(services, user_id="u1", cube_id="c1", memory_ids=ids)
    assert schedule_memories(services, user_id="u1", cube_id="c1", memory_ids=ids) == jobs  # idempotent
    assert Worker(services).run(until_idle=True) == 1
    assert services.tree.mentions(ids) == {ids[0]: ["ana", "joe", "porto"], ids[1]: ["chess", "joe"]}
    services.close()


def test_an_ingested_conversation_joins_the_entity_graph_with_grounded_dates(tmp_path: Path) -> None:
    from hippograph.graphs.ingest import build_ingest_graph
    from hippograph.nodes.ingest_state import IngestContext
    from hippograph.stores.registry import default_cube_id

    services = Services.from_settings(Settings(data_dir=tmp_path / "d", worker_in_process=False),
                                      embeddings=HashingEmbeddings(64))
    conversation = {"conversation_id": "conv1", "session_id": "s1", "session_date": "2023-05-08T13:56:00Z",
                    "messages": [{"speaker": "Caroline", "text": "I went to the LGBTQ support group yesterday."},
                                 {"speaker": "Melanie", "text": "Wow Caroline, how was Boston?"}]}
    graph = build_ingest_graph(services)
    cube = default_cube_id("u1")
    out = graph.invoke({"conversations": [conversation]}, context=IngestContext(user_id="u1", cube_id=cube))
    assert out["summary"]["enrich_jobs"] == 1
    turns = sorted(services.tree.list(cube_ids=[cube], limit=10), key=lambda m: m.turn_index or 0)
    turns = [t for t in turns if t.turn_index is not None]
    assert len(turns) == 2 and services.tree.mentions([t.id for t in turns]) == {}
    assert Worker(services).run(until_idle=True) == 1
    assert services.tree.mentions([turns[1].id]) == {turns[1].id: ["boston", "caroline"]}
    (first,) = services.tree.get([turns[0].id])
    assert "7 May 2023" in first.key and first.text == turns[0].text
    again = graph.invoke({"conversations": [conversation]}, context=IngestContext(user_id="u1", cube_id=cube))
    assert "enrich_jobs" not in again["summary"]  # unchanged: nothing new to enrich
    services.close()


def test_keyphrases_join_the_key_only_when_the_setting_asks(tmp_path: Path) -> None:
    from hippograph.nodes.enrich_entities import ground_times
    from hippograph.stores.tree.embedded import EmbeddedTreeStore

    tree = EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=2)
    text = "The quarterly budget review for the marine biology lab moved to the harbour office"
    item = MemoryItem(user_id="u", cube_id="c1", text=text, key="ana said", embedding=[1.0, 0.0])
    tree.add([item])
    (stored,) = tree.get([item.id], cube_ids=["c1"])
    assert ground_times(tree, [stored]) == 0  # off by default: no time expression, nothing to add
    assert ground_times(tree, [stored], keyphrases=2) == 1
    (stored,) = tree.get([item.id], cube_ids=["c1"])
    key, _, phrases = stored.key.partition(" · ")
    assert key == "ana said" and len(phrases.split("; ")) == 2
    assert all(word.lower() in text.lower() for word in phrases.replace(";", " ").split())
    assert [h.id for h in tree.text_search("harbour", cube_ids=["c1"])] == [item.id]
